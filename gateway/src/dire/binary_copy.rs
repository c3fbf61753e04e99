//! PostgreSQL's binary `COPY` format, written into memory.
//!
//! The store inserts the rows a plan knows are new (new devices, new
//! identifiers, new staging rows) with `COPY … FROM STDIN (FORMAT binary)`:
//! the server stores them with multi-row heap inserts and decodes no
//! parameter arrays, which makes an initial sync markedly cheaper than
//! `INSERT … SELECT FROM UNNEST(…)`. Rows that may already exist keep
//! going through `INSERT … ON CONFLICT`.
//!
//! Layout (PostgreSQL manual, "COPY", binary format): an 11-byte signature,
//! a flags word and a header-extension length; per row a 16-bit field count
//! and, per field, a 32-bit byte length (-1 for NULL) followed by the value
//! in the type's binary send format; a 16-bit -1 as trailer.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Signature, flags (no OIDs) and header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// OID of `text`, the element type of the `text[]` columns.
const TEXT_OID: i32 = 25;

/// Version byte of the `jsonb` binary format.
const JSONB_VERSION: u8 = 1;

/// Why a row could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field longer than a `COPY` field may be (2 GiB).
    #[error("a {what} field of {len} bytes is too long for COPY")]
    TooLong {
        /// The field's type.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A row with more fields than `COPY` allows.
    #[error("a row of {fields} fields is too wide for COPY")]
    TooWide {
        /// The field count.
        fields: usize,
    },
}

/// A binary `COPY` payload being written.
#[derive(Debug)]
pub struct CopyWriter {
    buf: Vec<u8>,
    rows: u64,
    error: Option<EncodeError>,
}

impl Default for CopyWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl CopyWriter {
    /// A payload with its header written, with room for `bytes` more.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER.len() + bytes + 2);
        buf.extend_from_slice(HEADER);
        Self {
            buf,
            rows: 0,
            error: None,
        }
    }

    /// Rows started so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Starts a row of `fields` fields; exactly that many field calls must
    /// follow.
    pub fn row(&mut self, fields: usize) -> &mut Self {
        match i16::try_from(fields) {
            Ok(count) => self.buf.extend_from_slice(&count.to_be_bytes()),
            Err(_) => self.fail(EncodeError::TooWide { fields }),
        }
        self.rows += 1;
        self
    }

    /// A NULL field.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// A `text` field.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bytes("text", value.as_bytes())
    }

    /// A nullable `text` field.
    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// A nullable `boolean` field.
    pub fn opt_bool(&mut self, value: Option<bool>) -> &mut Self {
        match value {
            Some(value) => self.bytes("boolean", &[u8::from(value)]),
            None => self.null(),
        }
    }

    /// A nullable `integer` field.
    pub fn opt_int4(&mut self, value: Option<i32>) -> &mut Self {
        match value {
            Some(value) => self.bytes("integer", &value.to_be_bytes()),
            None => self.null(),
        }
    }

    /// A `bigint` field.
    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.bytes("bigint", &value.to_be_bytes())
    }

    /// A `timestamptz` field (microsecond precision, like the column:
    /// finer digits are truncated).
    pub fn timestamptz(&mut self, value: DateTime<Utc>) -> &mut Self {
        let micros = value.timestamp_micros() - PG_EPOCH_MICROS;
        self.bytes("timestamptz", &micros.to_be_bytes())
    }

    /// A `uuid` field.
    pub fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.bytes("uuid", value.as_bytes())
    }

    /// A `text[]` field: a one-dimensional array without NULLs (the empty
    /// array has no dimension).
    pub fn text_array<S: AsRef<str>>(
        &mut self,
        items: impl ExactSizeIterator<Item = S> + Clone,
    ) -> &mut Self {
        let count = items.len();
        let body: usize = if count == 0 {
            12
        } else {
            20 + items
                .clone()
                .map(|item| 4 + item.as_ref().len())
                .sum::<usize>()
        };
        let Some(()) = self.length("text[]", body) else {
            return self;
        };
        let dims: i32 = if count == 0 { 0 } else { 1 };
        self.buf.extend_from_slice(&dims.to_be_bytes());
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no NULL elements
        self.buf.extend_from_slice(&TEXT_OID.to_be_bytes());
        if count > 0 {
            // `body` fitted in an i32, so the element count does too.
            self.buf
                .extend_from_slice(&i32::try_from(count).unwrap_or(i32::MAX).to_be_bytes());
            self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
            for item in items {
                self.bytes("text", item.as_ref().as_bytes());
            }
        }
        self
    }

    /// A `jsonb` field holding `value` serialised.
    pub fn jsonb<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(JSONB_VERSION);
        // Serialising JSON values and string maps into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, value);
        let len = self.buf.len() - start - 4;
        match i32::try_from(len) {
            Ok(len) => self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => self.fail(EncodeError::TooLong { what: "jsonb", len }),
        }
        self
    }

    /// A nullable `jsonb` field.
    pub fn opt_jsonb<T: Serialize + ?Sized>(&mut self, value: Option<&T>) -> &mut Self {
        match value {
            Some(value) => self.jsonb(value),
            None => self.null(),
        }
    }

    /// The finished payload (trailer appended), or the first encoding error.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(self.buf)
    }

    fn bytes(&mut self, what: &'static str, value: &[u8]) -> &mut Self {
        if self.length(what, value.len()).is_some() {
            self.buf.extend_from_slice(value);
        }
        self
    }

    /// Writes a field length; `None` (and a recorded error) when it does not
    /// fit COPY's 32-bit length.
    fn length(&mut self, what: &'static str, len: usize) -> Option<()> {
        match i32::try_from(len) {
            Ok(len) => {
                self.buf.extend_from_slice(&len.to_be_bytes());
                Some(())
            }
            Err(_) => {
                self.fail(EncodeError::TooLong { what, len });
                None
            }
        }
    }

    fn fail(&mut self, error: EncodeError) {
        self.error.get_or_insert(error);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn payload(write: impl FnOnce(&mut CopyWriter)) -> Vec<u8> {
        let mut writer = CopyWriter::default();
        write(&mut writer);
        let bytes = writer.finish().unwrap();
        assert_eq!(&bytes[..HEADER.len()], HEADER);
        assert_eq!(&bytes[bytes.len() - 2..], &[0xff, 0xff]);
        bytes[HEADER.len()..bytes.len() - 2].to_vec()
    }

    #[test]
    fn empty_payload_is_header_and_trailer() {
        let bytes = CopyWriter::default().finish().unwrap();
        assert_eq!(bytes.len(), 19 + 2);
        assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
    }

    #[test]
    fn scalars_use_the_send_formats() {
        let at: DateTime<Utc> = "2000-01-01T00:00:01.000002Z".parse().unwrap();
        let id = Uuid::parse_str("6f1c9d53-5d1e-4b53-9a43-1c1f5f5e2a10").unwrap();
        let body = payload(|w| {
            w.row(8)
                .text("ab")
                .null()
                .opt_bool(Some(true))
                .opt_int4(Some(-2))
                .int8(258)
                .timestamptz(at)
                .uuid(id)
                .opt_text(None);
        });
        let mut expected = vec![0, 8];
        expected.extend([0, 0, 0, 2, b'a', b'b']);
        expected.extend([0xff; 4]);
        expected.extend([0, 0, 0, 1, 1]);
        expected.extend([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend([0, 0, 0, 8]);
        expected.extend(1_000_002i64.to_be_bytes());
        expected.extend([0, 0, 0, 16]);
        expected.extend(id.as_bytes());
        expected.extend([0xff; 4]);
        assert_eq!(body, expected);
    }

    #[test]
    fn timestamps_before_2000_are_negative() {
        let at: DateTime<Utc> = "1999-12-31T23:59:59Z".parse().unwrap();
        let body = payload(|w| {
            w.row(1).timestamptz(at);
        });
        assert_eq!(&body[6..], &(-1_000_000i64).to_be_bytes());
    }

    #[test]
    fn text_arrays_are_one_dimensional_or_empty() {
        let body = payload(|w| {
            w.row(2)
                .text_array(["x", "yz"].into_iter())
                .text_array(std::iter::empty::<&str>());
        });
        let mut expected = vec![0, 2];
        expected.extend(31i32.to_be_bytes());
        expected.extend(1i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(25i32.to_be_bytes());
        expected.extend(2i32.to_be_bytes());
        expected.extend(1i32.to_be_bytes());
        expected.extend([0, 0, 0, 1, b'x', 0, 0, 0, 2, b'y', b'z']);
        expected.extend(12i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(25i32.to_be_bytes());
        assert_eq!(body, expected);
    }

    #[test]
    fn jsonb_is_versioned_json_text() {
        let map = BTreeMap::from([("k", "v\"")]);
        let body = payload(|w| {
            w.row(2).jsonb(&map).opt_jsonb::<serde_json::Value>(None);
        });
        let json = br#"{"k":"v\""}"#;
        let mut expected = vec![0, 2];
        expected.extend(i32::try_from(json.len() + 1).unwrap().to_be_bytes());
        expected.push(1);
        expected.extend(json);
        expected.extend([0xff; 4]);
        assert_eq!(body, expected);
    }

    #[test]
    fn rows_are_counted_and_oversized_rows_refused() {
        let mut writer = CopyWriter::default();
        writer.row(1).null();
        writer.row(1).null();
        assert_eq!(writer.rows(), 2);
        writer.row(40_000);
        assert_eq!(
            writer.finish(),
            Err(EncodeError::TooWide { fields: 40_000 })
        );
    }
}
