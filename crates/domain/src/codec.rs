//! The serde glue between an event enum and a stored event: a variant's name is the event type and
//! its content the payload, with no wrapper object in the stored JSON.
//!
//! Encoding runs the enum's `Serialize` against [`VariantSerializer`], which accepts only enum
//! variants and hands their content to `serde_json`. Decoding runs the enum's `Deserialize` against
//! [`TaggedPayload`], which presents the stored event type as the variant and parses the payload
//! text straight into that variant's content: one parse, no intermediate `Value`.

use serde::de::{self, DeserializeSeed, Visitor};
use serde::ser::{self, Serialize};
use serde_json::Value;

/// A variant's event type and its payload as JSON (`None` for a unit variant).
pub(crate) struct Encoded {
    pub(crate) event_type: &'static str,
    pub(crate) payload: Option<Value>,
}

/// Serialises `event` into its variant name and content.
pub(crate) fn encode<T: Serialize + ?Sized>(event: &T) -> Result<Encoded, String> {
    event.serialize(VariantSerializer).map_err(|err| err.0)
}

/// Deserialises the variant named `event_type` from the payload text (`None`: no payload).
pub(crate) fn decode<T: de::DeserializeOwned>(
    event_type: &str,
    payload: Option<&str>,
) -> Result<T, serde_json::Error> {
    T::deserialize(TaggedPayload {
        event_type,
        payload: Content::Text(payload),
    })
}

/// Deserialises the variant named `event_type` from an upcast payload.
pub(crate) fn decode_value<T: de::DeserializeOwned>(
    event_type: &str,
    payload: Value,
) -> Result<T, serde_json::Error> {
    T::deserialize(TaggedPayload {
        event_type,
        payload: Content::Value(payload),
    })
}

/// The error of [`VariantSerializer`]: only ever a message.
#[derive(Debug)]
struct EncodeFailure(String);

impl std::fmt::Display for EncodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeFailure {}

impl ser::Error for EncodeFailure {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        EncodeFailure(msg.to_string())
    }
}

fn not_a_variant() -> EncodeFailure {
    EncodeFailure(
        "a DomainEvent must serialise as an enum variant (is it an enum without \
         #[serde(tag)] or #[serde(untagged)]?)"
            .into(),
    )
}

fn json(err: serde_json::Error) -> EncodeFailure {
    EncodeFailure(err.to_string())
}

/// Accepts exactly one enum variant and captures its name and content.
struct VariantSerializer;

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $out:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$out, EncodeFailure> {
            Err(not_a_variant())
        })*
    };
}

impl ser::Serializer for VariantSerializer {
    type Ok = Encoded;
    type Error = EncodeFailure;
    type SerializeSeq = ser::Impossible<Encoded, EncodeFailure>;
    type SerializeTuple = ser::Impossible<Encoded, EncodeFailure>;
    type SerializeTupleStruct = ser::Impossible<Encoded, EncodeFailure>;
    type SerializeTupleVariant = TupleVariant;
    type SerializeMap = ser::Impossible<Encoded, EncodeFailure>;
    type SerializeStruct = ser::Impossible<Encoded, EncodeFailure>;
    type SerializeStructVariant = StructVariant;

    refuse! {
        serialize_bool(bool) -> Encoded;
        serialize_i8(i8) -> Encoded;
        serialize_i16(i16) -> Encoded;
        serialize_i32(i32) -> Encoded;
        serialize_i64(i64) -> Encoded;
        serialize_u8(u8) -> Encoded;
        serialize_u16(u16) -> Encoded;
        serialize_u32(u32) -> Encoded;
        serialize_u64(u64) -> Encoded;
        serialize_f32(f32) -> Encoded;
        serialize_f64(f64) -> Encoded;
        serialize_char(char) -> Encoded;
        serialize_str(&str) -> Encoded;
        serialize_bytes(&[u8]) -> Encoded;
        serialize_none() -> Encoded;
        serialize_unit() -> Encoded;
        serialize_unit_struct(&'static str) -> Encoded;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Encoded, EncodeFailure> {
        Err(not_a_variant())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Encoded, EncodeFailure> {
        // A newtype around the enum is transparent.
        value.serialize(self)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Encoded, EncodeFailure> {
        Ok(Encoded {
            event_type: variant,
            payload: None,
        })
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Encoded, EncodeFailure> {
        Ok(Encoded {
            event_type: variant,
            payload: Some(serde_json::to_value(value).map_err(json)?),
        })
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleVariant, EncodeFailure> {
        Ok(TupleVariant {
            event_type: variant,
            items: Vec::with_capacity(len),
        })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<StructVariant, EncodeFailure> {
        Ok(StructVariant {
            event_type: variant,
            fields: serde_json::Map::new(),
        })
    }
}

/// A tuple variant's items, stored as a JSON array.
struct TupleVariant {
    event_type: &'static str,
    items: Vec<Value>,
}

impl ser::SerializeTupleVariant for TupleVariant {
    type Ok = Encoded;
    type Error = EncodeFailure;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeFailure> {
        self.items.push(serde_json::to_value(value).map_err(json)?);
        Ok(())
    }

    fn end(self) -> Result<Encoded, EncodeFailure> {
        Ok(Encoded {
            event_type: self.event_type,
            payload: Some(Value::Array(self.items)),
        })
    }
}

/// A struct variant's fields, stored as a JSON object.
struct StructVariant {
    event_type: &'static str,
    fields: serde_json::Map<String, Value>,
}

impl ser::SerializeStructVariant for StructVariant {
    type Ok = Encoded;
    type Error = EncodeFailure;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeFailure> {
        self.fields
            .insert(key.to_owned(), serde_json::to_value(value).map_err(json)?);
        Ok(())
    }

    fn end(self) -> Result<Encoded, EncodeFailure> {
        Ok(Encoded {
            event_type: self.event_type,
            payload: Some(Value::Object(self.fields)),
        })
    }
}

/// A payload as stored (text, parsed once into the variant) or after upcasting (a `Value`).
enum Content<'a> {
    Text(Option<&'a str>),
    Value(Value),
}

/// Presents a stored event as the enum variant `event_type` with the payload as its content.
struct TaggedPayload<'a> {
    event_type: &'a str,
    payload: Content<'a>,
}

impl<'de, 'a: 'de> de::Deserializer<'de> for TaggedPayload<'a> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, serde_json::Error> {
        Err(de::Error::custom(
            "a DomainEvent must deserialise as an enum (is it an enum without #[serde(tag)] or \
             #[serde(untagged)]?)",
        ))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de, 'a: 'de> de::EnumAccess<'de> for TaggedPayload<'a> {
    type Error = serde_json::Error;
    type Variant = Content<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Content<'a>), serde_json::Error> {
        let tag = de::value::BorrowedStrDeserializer::<serde_json::Error>::new(self.event_type);
        Ok((seed.deserialize(tag)?, self.payload))
    }
}

impl<'de, 'a: 'de> de::VariantAccess<'de> for Content<'a> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), serde_json::Error> {
        // A unit event may have been written with an empty object or `null` by another writer.
        let empty = match &self {
            Content::Text(None) => true,
            Content::Text(Some(text)) => matches!(text.trim(), "null" | "{}"),
            Content::Value(value) => {
                value.is_null() || value.as_object().is_some_and(|map| map.is_empty())
            }
        };
        if empty {
            Ok(())
        } else {
            Err(de::Error::custom("a unit event type carries no payload"))
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, serde_json::Error> {
        match self {
            Content::Text(text) => {
                let mut json = serde_json::Deserializer::from_str(text.unwrap_or("null"));
                let value = seed.deserialize(&mut json)?;
                json.end()?;
                Ok(value)
            }
            Content::Value(value) => seed.deserialize(value),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self {
            Content::Text(text) => {
                let mut json = serde_json::Deserializer::from_str(text.unwrap_or("[]"));
                let value = de::Deserializer::deserialize_tuple(&mut json, len, visitor)?;
                json.end()?;
                Ok(value)
            }
            Content::Value(value) => de::Deserializer::deserialize_tuple(value, len, visitor),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self {
            Content::Text(text) => {
                let mut json = serde_json::Deserializer::from_str(text.unwrap_or("{}"));
                let value = de::Deserializer::deserialize_struct(&mut json, "", fields, visitor)?;
                json.end()?;
                Ok(value)
            }
            Content::Value(value) => {
                de::Deserializer::deserialize_struct(value, "", fields, visitor)
            }
        }
    }
}
