//! JSON containment with PostgreSQL's `jsonb @>` semantics, so the in-memory backend filters
//! payloads exactly as the database does.

use serde_json::Value;

/// Whether `container` contains `contained`: every key of an object is present with a contained
/// value; every element of an array is contained in some element of the container array (order and
/// duplicates do not matter); scalars are equal (numbers by value, so `1` equals `1.0`). Unlike a
/// top-level `jsonb` scalar, a nested scalar never matches an array.
pub(crate) fn contains(container: &Value, contained: &Value) -> bool {
    match (container, contained) {
        (Value::Object(outer), Value::Object(inner)) => inner.iter().all(|(key, value)| {
            outer
                .get(key)
                .is_some_and(|candidate| contains(candidate, value))
        }),
        (Value::Array(outer), Value::Array(inner)) => inner.iter().all(|value| {
            outer.iter().any(|candidate| match (candidate, value) {
                // Scalars in arrays compare as scalars; containers recurse.
                (Value::Array(_) | Value::Object(_), _)
                | (_, Value::Array(_) | Value::Object(_)) => contains(candidate, value),
                _ => scalar_eq(candidate, value),
            })
        }),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => scalar_eq(container, contained),
    }
}

fn scalar_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => match (a.as_u64(), b.as_u64()) {
                (Some(a), Some(b)) => a == b,
                _ => a.as_f64() == b.as_f64(),
            },
        },
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::contains;

    #[test]
    fn follows_jsonb_containment() {
        let doc = json!({"a": 1, "b": {"c": [1, 2, {"d": "x"}]}, "e": null, "f": [[1, 2]]});
        assert!(contains(&doc, &json!({})));
        assert!(contains(&doc, &json!({"a": 1})));
        assert!(contains(&doc, &json!({"a": 1.0})));
        assert!(contains(&doc, &json!({"b": {"c": [2]}})));
        assert!(contains(&doc, &json!({"b": {"c": [{"d": "x"}, 1, 1]}})));
        assert!(contains(&doc, &json!({"e": null})));
        assert!(contains(&doc, &json!({"f": [[2]]})));
        assert!(!contains(&doc, &json!({"a": 2})));
        assert!(!contains(&doc, &json!({"a": "1"})));
        assert!(!contains(&doc, &json!({"b": {"c": 1}})));
        assert!(!contains(&doc, &json!({"b": {"c": [3]}})));
        assert!(!contains(&doc, &json!({"f": [2]})));
        assert!(!contains(&doc, &json!({"z": null})));
    }
}
