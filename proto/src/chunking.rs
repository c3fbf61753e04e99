//! Packing DeviceUpdates into self-contained JSON-array chunks.
//!
//! Every chunk is a complete JSON array that decodes on its own, and stays at
//! or below the byte budget it was built with. The encoder holds one chunk at
//! a time, so memory is bounded by the budget, not by the number of devices.

use serde::Serialize;
use thiserror::Error;

/// Why an element could not be added to a chunk.
#[derive(Debug, Error)]
pub enum ChunkError {
    /// A single element is larger than the chunk budget on its own.
    #[error(
        "a single DeviceUpdate serialises to {size} bytes, over the {budget}-byte chunk budget; trim its metadata or raw data"
    )]
    ElementTooLarge {
        /// Serialised size of the element.
        size: usize,
        /// The chunk budget.
        budget: usize,
    },
    /// The element could not be serialised.
    #[error("DeviceUpdate could not be serialised: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A finished chunk: a JSON array and how many elements it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The JSON array, `[...]`.
    pub payload: Vec<u8>,
    /// Number of elements in the array.
    pub elements: usize,
}

/// Builds JSON-array chunks of at most `budget` bytes each.
#[derive(Debug)]
pub struct ChunkEncoder {
    budget: usize,
    buf: Vec<u8>,
    elements: usize,
    scratch: Vec<u8>,
}

impl ChunkEncoder {
    /// An encoder whose chunks never exceed `budget` bytes (minimum 64).
    pub fn new(budget: usize) -> Self {
        let budget = budget.max(64);
        Self {
            budget,
            buf: Vec::with_capacity(budget.min(1 << 20)),
            elements: 0,
            scratch: Vec::new(),
        }
    }

    /// The byte budget of each chunk.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Number of elements in the chunk being built.
    pub fn pending(&self) -> usize {
        self.elements
    }

    /// Whether an element of `len` serialised bytes would still fit in the
    /// chunk being built (an empty chunk takes anything within the budget).
    pub fn fits(&self, len: usize) -> bool {
        if self.elements == 0 {
            len + 2 <= self.budget
        } else {
            // Current bytes, a comma, the element and the closing bracket.
            self.buf.len() + len + 2 <= self.budget
        }
    }

    /// Serialises `value` and adds it. Returns the previous chunk when this
    /// element did not fit in it; the element then starts the next chunk.
    pub fn push<T: Serialize>(&mut self, value: &T) -> Result<Option<Chunk>, ChunkError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        serde_json::to_writer(&mut scratch, value)?;
        let result = self.push_serialized(&scratch);
        self.scratch = scratch;
        result
    }

    /// Adds one already-serialised JSON value. Same contract as [`Self::push`].
    pub fn push_serialized(&mut self, element: &[u8]) -> Result<Option<Chunk>, ChunkError> {
        // `[` + element + `]` must fit on its own.
        if element.len() + 2 > self.budget {
            return Err(ChunkError::ElementTooLarge {
                size: element.len(),
                budget: self.budget,
            });
        }
        let mut finished = None;
        // Current size with the closing bracket, plus a comma and the element.
        if self.elements > 0 && self.buf.len() + 1 + element.len() + 1 > self.budget {
            finished = self.finish();
        }
        if self.elements == 0 {
            self.buf.push(b'[');
        } else {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(element);
        self.elements += 1;
        Ok(finished)
    }

    /// Closes and returns the chunk being built, if it holds anything.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.elements == 0 {
            return None;
        }
        self.buf.push(b']');
        let payload =
            std::mem::replace(&mut self.buf, Vec::with_capacity(self.budget.min(1 << 20)));
        let elements = std::mem::take(&mut self.elements);
        Some(Chunk { payload, elements })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn drain(values: &[Value], budget: usize) -> Vec<Chunk> {
        let mut encoder = ChunkEncoder::new(budget);
        let mut chunks = Vec::new();
        for value in values {
            if let Some(chunk) = encoder.push(value).unwrap() {
                chunks.push(chunk);
            }
        }
        chunks.extend(encoder.finish());
        chunks
    }

    #[test]
    fn every_chunk_is_a_valid_array_within_budget_and_nothing_is_lost() {
        let values: Vec<Value> = (0..1000)
            .map(|i| json!({"ip": format!("10.0.{}.{}", i / 250, i % 250), "n": i}))
            .collect();
        let chunks = drain(&values, 512);
        assert!(chunks.len() > 1);
        let mut seen = Vec::new();
        for chunk in &chunks {
            assert!(
                chunk.payload.len() <= 512,
                "chunk of {} bytes",
                chunk.payload.len()
            );
            let decoded: Vec<Value> = serde_json::from_slice(&chunk.payload).unwrap();
            assert_eq!(decoded.len(), chunk.elements);
            seen.extend(decoded);
        }
        assert_eq!(seen, values);
    }

    #[test]
    fn exact_fit_stays_in_one_chunk() {
        // `[1,2]` is 5 bytes.
        let chunks = drain(&[json!(1), json!(2)], 64);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].payload, b"[1,2]");
    }

    #[test]
    fn oversized_element_is_refused_and_encoder_stays_usable() {
        let mut encoder = ChunkEncoder::new(64);
        let big = json!("x".repeat(100));
        assert!(matches!(
            encoder.push(&big),
            Err(ChunkError::ElementTooLarge { .. })
        ));
        assert!(encoder.push(&json!(1)).unwrap().is_none());
        assert_eq!(encoder.finish().unwrap().payload, b"[1]");
    }

    #[test]
    fn fits_predicts_whether_push_starts_a_new_chunk() {
        let mut encoder = ChunkEncoder::new(64);
        let element = b"\"0123456789\"";
        let mut pushed = 0;
        while encoder.fits(element.len()) {
            assert!(encoder.push_serialized(element).unwrap().is_none());
            pushed += 1;
        }
        assert!(pushed > 1);
        assert!(encoder.push_serialized(element).unwrap().is_some());
    }

    #[test]
    fn empty_encoder_finishes_with_nothing() {
        assert!(ChunkEncoder::new(1024).finish().is_none());
    }
}
