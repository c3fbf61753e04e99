//! placeholder

pub mod enroll;
