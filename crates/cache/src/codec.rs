//! How the persistent connectors store a value: one format byte, then bincode 2 through serde.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The first byte of every stored payload. Bump it when the framing (not the value type) changes,
/// so old payloads miss instead of decoding wrongly.
const FORMAT_V1: u8 = 1;

/// The most a decoded value may claim to occupy (64 MiB).
const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;

/// Why a stored payload did not decode; the caller sees a miss.
#[derive(Debug, Error)]
pub(crate) enum CodecError {
    #[error("could not encode the value")]
    Encode(#[source] bincode::error::EncodeError),
    #[error("could not decode the stored value")]
    Decode(#[source] bincode::error::DecodeError),
    #[error("unknown payload format {0}")]
    UnknownFormat(u8),
    #[error("empty payload")]
    Empty,
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

pub(crate) fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, CodecError> {
    let mut payload = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut payload, bincode::config::standard())
        .map_err(CodecError::Encode)?;
    Ok(payload)
}

pub(crate) fn decode<V: DeserializeOwned>(payload: &[u8]) -> Result<V, CodecError> {
    let Some((format, body)) = payload.split_first() else {
        return Err(CodecError::Empty);
    };
    if *format != FORMAT_V1 {
        return Err(CodecError::UnknownFormat(*format));
    }
    // The limit bounds what a corrupted length prefix can make the decoder allocate: no honest
    // value is larger than the payload it came from.
    let config = bincode::config::standard().with_limit::<MAX_DECODED_BYTES>();
    let (value, read) =
        bincode::serde::decode_from_slice(body, config).map_err(CodecError::Decode)?;
    // A payload longer than the value is another type's: refuse it rather than return a value that
    // happens to parse from its prefix.
    if read < body.len() {
        return Err(CodecError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let value = (String::from("alice"), vec![1_u32, 2, 3]);
        let payload = encode(&value).unwrap();
        assert_eq!(payload[0], FORMAT_V1);
        assert_eq!(decode::<(String, Vec<u32>)>(&payload).unwrap(), value);
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<u32>(&[9, 1]),
            Err(CodecError::UnknownFormat(9))
        ));
        assert!(decode::<(String, Vec<u32>)>(&[FORMAT_V1, 0xff, 0xff]).is_err());
        assert!(matches!(
            decode::<u8>(&payload),
            Err(CodecError::Trailing(_))
        ));
    }

    #[test]
    fn a_forged_length_is_refused_without_allocating_it() {
        // Format byte, then a varint length of u64::MAX for a Vec<u64>.
        let payload = [
            FORMAT_V1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(decode::<Vec<u64>>(&payload).is_err());
        let payload = [
            FORMAT_V1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(decode::<String>(&payload).is_err());
    }

    /// A value with the shapes cached objects have: strings, lists, options, numbers, nesting.
    type Shape = (String, Vec<String>, Option<u64>, i32, Vec<(String, bool)>);

    proptest::proptest! {
        // Fuzzing the decoder: whatever bytes a broken or hostile store returns, decoding gives a
        // value or an error, never a panic or an unbounded allocation.
        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode::<Shape>(&payload);
            let _ = decode::<String>(&payload);
            let _ = decode::<Vec<u64>>(&payload);
        }

        #[test]
        fn values_round_trip_exactly(value in proptest::prelude::any::<Shape>()) {
            let payload = encode(&value).unwrap();
            proptest::prop_assert_eq!(decode::<Shape>(&payload).unwrap(), value);
        }

        #[test]
        fn a_damaged_payload_is_an_error_or_another_value_never_a_panic(
            value in proptest::prelude::any::<Shape>(),
            cut in 0usize..64,
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let mut payload = encode(&value).unwrap();
            let at = flip.0 % payload.len();
            payload[at] ^= flip.1;
            let _ = decode::<Shape>(&payload);
            payload.truncate(payload.len().saturating_sub(cut));
            let _ = decode::<Shape>(&payload);
        }
    }
}
