//! How the persistent connectors store a value: one format byte, then bincode 2 through serde.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The first byte of every stored payload. Bump it when the framing (not the value type) changes,
/// so old payloads miss instead of decoding wrongly.
const FORMAT_V1: u8 = 1;

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
    let (value, read) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(CodecError::Decode)?;
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
}
