//! JSON read the way daprd's Go decoder (`encoding/json`) reads it, so
//! bodies SDKs send daprd decode the same here:
//!
//! - a struct's field names match case-insensitively when no field matches
//!   exactly (the JS SDK sends `entryID` for `entryId`);
//! - `null` where an object, array, string or bool is expected leaves the
//!   field at its default instead of failing (`"metadata": null`).
//!
//! It is one pass: a [`Deserializer`] adapter around serde_json's that only
//! steps in at struct keys (a name compared against the struct's field list)
//! and at `null`s; a body whose names already match is decoded as before.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// `serde_json::from_slice` with Go's decoding rules (see the module docs).
pub fn from_slice<'de, T: Deserialize<'de>>(b: &'de [u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(b);
    let v = T::deserialize(Go(&mut de))?;
    de.end()?;
    Ok(v)
}

struct Go<D>(D);

/// The call a `null` check stands in front of.
#[derive(Clone, Copy)]
enum Then {
    Map,
    Seq,
    Str,
    String,
    Bool,
    Struct(&'static str, &'static [&'static str]),
}

macro_rules! forward {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$m(Wrap { inner: v, fields: None })
        }
    )*};
}

macro_rules! nullable {
    ($($m:ident => $t:expr),*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_option(OrZero { inner: v, then: $t })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Go<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any
    );

    nullable!(
        deserialize_map => Then::Map,
        deserialize_seq => Then::Seq,
        deserialize_str => Then::Str,
        deserialize_string => Then::String,
        deserialize_bool => Then::Bool
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(
            name,
            Wrap {
                inner: v,
                fields: None,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        // serde_json's RawValue is a newtype it captures itself: hand it over untouched.
        if name.starts_with("$serde_json") {
            return self.0.deserialize_newtype_struct(name, v);
        }
        self.0.deserialize_newtype_struct(
            name,
            Wrap {
                inner: v,
                fields: None,
            },
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(
            len,
            Wrap {
                inner: v,
                fields: None,
            },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(
            name,
            len,
            Wrap {
                inner: v,
                fields: None,
            },
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(OrZero {
            inner: v,
            then: Then::Struct(name, fields),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// In front of a call that can't take `null`: the zero value for `null`,
/// else the call itself.
struct OrZero<V> {
    inner: V,
    then: Then,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for OrZero<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        match self.then {
            Then::Map | Then::Struct(..) => self.inner.visit_map(empty()),
            Then::Seq => self.inner.visit_seq(empty()),
            Then::Str | Then::String => self.inner.visit_str(""),
            Then::Bool => self.inner.visit_bool(false),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let plain = Wrap {
            inner: self.inner,
            fields: None,
        };
        match self.then {
            Then::Map => d.deserialize_map(plain),
            Then::Seq => d.deserialize_seq(plain),
            Then::Str => d.deserialize_str(plain),
            Then::String => d.deserialize_string(plain),
            Then::Bool => d.deserialize_bool(plain),
            Then::Struct(name, fields) => d.deserialize_struct(
                name,
                fields,
                Wrap {
                    inner: plain.inner,
                    fields: Some(fields),
                },
            ),
        }
    }
}

/// An empty map or sequence: what `null` decodes to.
struct Empty<E>(PhantomData<E>);

fn empty<E>() -> Empty<E> {
    Empty(PhantomData)
}

impl<'de, E: de::Error> MapAccess<'de> for Empty<E> {
    type Error = E;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, E> {
        Ok(None)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, _: S) -> Result<S::Value, E> {
        Err(E::custom("a map with no keys has no values"))
    }
}

impl<'de, E: de::Error> SeqAccess<'de> for Empty<E> {
    type Error = E;
    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, _: S) -> Result<Option<S::Value>, E> {
        Ok(None)
    }
}

/// A visitor whose nested values are read through [`Go`] again; `fields`
/// is the struct's field list when it visits a struct's map.
struct Wrap<V> {
    inner: V,
    fields: Option<&'static [&'static str]>,
}

macro_rules! pass {
    ($($m:ident: $t:ty),*) => {$(
        fn $m<E: de::Error>(self, x: $t) -> Result<V::Value, E> {
            self.inner.$m(x)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass!(
        visit_bool: bool,
        visit_i8: i8,
        visit_i16: i16,
        visit_i32: i32,
        visit_i64: i64,
        visit_i128: i128,
        visit_u8: u8,
        visit_u16: u16,
        visit_u32: u32,
        visit_u64: u64,
        visit_u128: u128,
        visit_f32: f32,
        visit_f64: f64,
        visit_char: char,
        visit_str: &str,
        visit_borrowed_str: &'de str,
        visit_string: String,
        visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8],
        visit_byte_buf: Vec<u8>
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Go(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Go(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            fields: self.fields,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A> {
    inner: A,
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.fields {
            Some(fields) => self.inner.next_key_seed(FieldName { seed, fields }),
            None => self.inner.next_key_seed(Seed(seed)),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A value read through [`Go`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Go(d))
    }
}

/// A struct's key: itself when it names a field exactly (or none at all),
/// else the field it names ignoring ASCII case.
struct FieldName<S> {
    seed: S,
    fields: &'static [&'static str],
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for FieldName<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<S> FieldName<S> {
    fn canonical(&self, key: &str) -> Option<&'static str> {
        if self.fields.contains(&key) {
            return None;
        }
        self.fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(key))
            .copied()
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for FieldName<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, k: &'de str) -> Result<S::Value, E> {
        match self.canonical(k) {
            Some(f) => self.seed.deserialize(BorrowedStrDeserializer::new(f)),
            None => self.seed.deserialize(BorrowedStrDeserializer::new(k)),
        }
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<S::Value, E> {
        match self.canonical(k) {
            Some(f) => self.seed.deserialize(BorrowedStrDeserializer::new(f)),
            None => self.seed.deserialize(StrDeserializer::new(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::from_slice;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        #[serde(default)]
        entry_id: String,
        #[serde(default)]
        metadata: HashMap<String, String>,
        value: Option<Box<RawValue>>,
        #[serde(default)]
        items: Vec<Inner>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Deserialize, Debug, Default)]
    struct Inner {
        #[serde(default)]
        key: String,
    }

    #[test]
    fn names_match_ignoring_case_exact_first() {
        let e: Entry = from_slice(br#"{"ENTRYID":"a","Metadata":{"K":"v"}}"#).unwrap();
        assert_eq!(e.entry_id, "a");
        assert_eq!(e.metadata["K"], "v", "map keys are data, kept as sent");
        let e: Entry =
            from_slice(br#"{"entryID":"x","items":[{"KEY":"k"}],"inner":{"Key":"i"}}"#).unwrap();
        assert_eq!(e.entry_id, "x");
        assert_eq!(e.items[0].key, "k");
        assert_eq!(e.inner.unwrap().key, "i");
    }

    #[test]
    fn null_is_the_zero_value() {
        let e: Entry =
            from_slice(br#"{"entryId":null,"metadata":null,"items":null,"inner":null}"#).unwrap();
        assert!(e.entry_id.is_empty() && e.metadata.is_empty() && e.items.is_empty());
        assert!(e.inner.is_none());
        let v: Vec<Entry> = from_slice(b"null").unwrap();
        assert!(v.is_empty());
    }

    #[test]
    fn raw_values_and_errors_survive() {
        let e: Entry = from_slice(br#"{"value":{"a":[1,2]},"entryId":"x"}"#).unwrap();
        assert_eq!(e.value.unwrap().get(), r#"{"a":[1,2]}"#);
        assert!(from_slice::<Entry>(b"{not json").is_err());
        assert!(from_slice::<Entry>(br#"{"entryId":"a"} trailing"#).is_err());
        assert!(from_slice::<Entry>(br#"{"metadata":{"k":1}}"#).is_err());
    }
}
