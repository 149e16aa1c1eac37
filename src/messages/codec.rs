//! bincode 2 (serde mode) with one configuration for disk and wire, and a size limit on
//! decoding so that a hostile length prefix cannot make us allocate.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Serialize, de::DeserializeOwned};

/// The largest value we ever decode (a frame, a snapshot chunk): 256 MiB.
pub const DECODE_LIMIT: usize = 256 << 20;

/// The largest peer-to-peer frame (one encoded envelope) by default: 4 MiB. The TCP
/// transport's `max_frame` and the `max_frame_bytes` setting default to it.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// The most value bytes one message may carry (an Accept batch, a Decide, a Promise, a
/// Fetched) so that it fits a frame of `max_frame` bytes with room to spare for its
/// framing: half a frame. A client command may be at most this large too.
pub const fn message_budget(max_frame: usize) -> usize {
    max_frame / 2
}

fn config() -> Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes `value` into a vector of exactly its size.
///
/// bincode's own `encode_to_vec` grows its vector as it writes (a 4 KiB `Accept` went
/// through ten reallocations, about 5 % of a leader's roles' thread): this encodes into
/// a buffer each thread keeps, then copies once.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        // Busy only if a Serialize impl encodes something itself: then no scratch.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return bincode::serde::encode_to_vec(value, config());
        };
        buf.clear();
        let encoded = bincode::serde::encode_into_std_write(value, &mut *buf, config()).map(|_| buf.to_vec());
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new(); // a rare large value (a snapshot) does not stay resident
        }
        encoded
    })
}

/// The most scratch capacity a thread keeps between encodings: a full batch (at most
/// half a frame of values by default) with its framing fits.
const SCRATCH_KEEP: usize = 4 << 20;

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

/// Byte strings as byte strings, for `#[serde(with = "crate::messages::codec::bytes")]` on a
/// `Vec<u8>` field. Serde's default treats a `Vec<u8>` as a sequence of `u8`s, which
/// bincode encodes and decodes one element at a time (about 4 % of a cluster's CPU
/// under 64-connection puts, on the values alone). The encoding is the same either
/// way (a length, then the bytes), so what was written before reads back unchanged;
/// formats without byte strings (JSON) still see a sequence of numbers.
pub mod bytes {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<T: AsRef<[u8]> + ?Sized, S: Serializer>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Not `deserialize_byte_buf`: bincode's slice decoder would allocate the claimed
        // length before checking that the input holds it (a garbled length: up to the
        // decode limit, or unbounded from local files). `deserialize_bytes` checks first.
        d.deserialize_bytes(ByteBuf)
    }

    /// Takes a byte string in any of the forms a deserializer may hand it over.
    struct ByteBuf;

    impl<'de> Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The hint comes from the input: cap what it can make us reserve.
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    /// The same for an `Option<Vec<u8>>` field.
    pub mod option {
        use serde::de::{self, Visitor};
        use serde::{Deserializer, Serialize, Serializer};
        use std::fmt;

        struct Bytes<'a>(&'a [u8]);

        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }

        pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => s.serialize_some(&Bytes(b)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            struct OptionBytes;
            impl<'de> Visitor<'de> for OptionBytes {
                type Value = Option<Vec<u8>>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an optional byte string")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    super::deserialize(d).map(Some)
                }
            }
            d.deserialize_option(OptionBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// The same fields with serde's default (a sequence of `u8`s) and as byte strings.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSeq {
        a: Vec<u8>,
        b: Option<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "bytes")]
        a: Vec<u8>,
        #[serde(with = "bytes::option")]
        b: Option<Vec<u8>>,
    }

    #[test]
    fn codec_byte_strings_encode_like_sequences_so_old_records_still_read() {
        for b in [None, Some(vec![]), Some(vec![0, 255, 7])] {
            let seq = AsSeq {
                a: (0..=255).collect(),
                b: b.clone(),
            };
            let bytes = AsBytes {
                a: (0..=255).collect(),
                b,
            };
            let encoded = encode(&seq).expect("encode");
            assert_eq!(encoded, encode(&bytes).expect("encode"), "same bincode bytes");
            assert_eq!(decode::<AsBytes>(&encoded).expect("decode"), bytes);
            // JSON has no byte strings: both forms are arrays of numbers.
            let json = serde_json::to_string(&seq).expect("json");
            assert_eq!(json, serde_json::to_string(&bytes).expect("json"));
            assert_eq!(serde_json::from_str::<AsBytes>(&json).expect("from json"), bytes);
        }
    }
}
