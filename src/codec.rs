//! bincode 2 (serde mode) with one configuration for disk and wire, and a size limit on
//! decoding so that a hostile length prefix cannot make us allocate.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Serialize, de::DeserializeOwned};

/// The largest value we ever decode (a frame, a snapshot chunk): 256 MiB.
pub const DECODE_LIMIT: usize = 256 << 20;

fn config() -> Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}

/// Appends the encoding of `value` to `buf` (no intermediate buffer).
pub fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<usize, bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, buf, config())
}

/// Writes the encoding of `value` to `w`.
pub fn encode_to_writer<T: Serialize>(
    value: &T,
    w: &mut impl std::io::Write,
) -> Result<usize, bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, w, config())
}

/// Decodes a whole buffer; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Decodes data this node wrote itself (its own disk: snapshots, which may be larger
/// than anything a peer may send), without the size limit. Never use it on peer input.
pub fn decode_local<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    if used != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}
