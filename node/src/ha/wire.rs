//! The binary bodies the two nodes of a brand exchange (spec/api.md, "Standby replication"):
//! big-endian integers and length-prefixed byte strings, read without trusting any length
//! (a length is checked against what is left of the body before anything is allocated).

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the body ends early")]
    Short,
    #[error("{0}")]
    Invalid(String),
}

/// Builds a body.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn with_capacity(n: usize) -> Writer {
        Writer(Vec::with_capacity(n))
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// A byte string of at most `u32::MAX` bytes, length first.
    pub fn bytes(&mut self, b: &[u8]) {
        let n = u32::try_from(b.len()).expect("a byte string under 4 GiB");
        self.u32(n);
        self.0.extend_from_slice(b);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a body.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Short);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    /// Checks that the body starts with `magic`.
    pub fn magic(&mut self, magic: &[u8]) -> Result<(), WireError> {
        if self.take(magic.len())? != magic {
            return Err(WireError::Invalid(
                "not a body of this kind or version".into(),
            ));
        }
        Ok(())
    }
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `item_bytes_min` long: refused when the rest of the body
    /// cannot hold that many (so a forged count never sizes an allocation).
    pub fn count(&mut self, item_bytes_min: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_bytes_min.max(1)) > self.b.len() {
            return Err(WireError::Short);
        }
        Ok(n)
    }
    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    /// Fails unless the whole body was read.
    pub fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Invalid(format!(
                "{} bytes after the end of the body",
                self.b.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_back_and_a_forged_length_or_count_is_refused_without_allocating() {
        let mut w = Writer::default();
        w.raw(b"MAGC");
        w.u8(7);
        w.u64(u64::MAX - 1);
        w.i64(-5);
        w.bytes(b"key");
        let b = w.into_inner();
        let mut r = Reader::new(&b);
        assert_eq!(r.magic(b"MAGC"), Ok(()));
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.i64(), Ok(-5));
        assert_eq!(r.bytes(), Ok(&b"key"[..]));
        assert_eq!(r.end(), Ok(()));
        assert_eq!(r.u8(), Err(WireError::Short));
        assert!(Reader::new(&b).magic(b"MAGD").is_err());

        let mut w = Writer::default();
        w.u32(u32::MAX);
        let body = w.into_inner();
        assert_eq!(Reader::new(&body).bytes(), Err(WireError::Short));
        assert_eq!(Reader::new(&body).count(1), Err(WireError::Short));
    }
}
