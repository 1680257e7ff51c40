//! eXo's answers parsed from arbitrary input: never a panic, malformed JSON is an
//! error (nothing is acted on), and well-formed pages give exactly their entries.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("spaces".to_owned()),
            Just("users".to_owned()),
            Just("spacesMemberships".to_owned()),
            Just("size".to_owned()),
            Just("id".to_owned()),
            Just("username".to_owned()),
            Just("groupId".to_owned()),
            Just("enabled".to_owned()),
            "[a-zA-Z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn parse_all(bytes: &[u8]) -> [bool; 3] {
    [parse::<Page<Space>>(bytes).is_ok(), parse::<Page<User>>(bytes).is_ok(), parse::<Page<Membership>>(bytes).is_ok()]
}

prop_compose! {
    fn space()(id in "[0-9]{1,4}", name in proptest::option::of(".{0,10}"), group in proptest::option::of("/spaces/[a-z_]{0,8}"),
               description in proptest::option::of(".{0,20}")) -> Space {
        Space { id, display_name: name.clone(), pretty_name: name, group_id: group, description, ..Space::default() }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_only_objects_parse(value in json_value()) {
        let bytes = serde_json::to_vec(&value).expect("serializable");
        let parsed = parse_all(&bytes);
        if !value.is_object() {
            prop_assert_eq!(parsed, [false; 3], "only an object is a page: {}", value);
        }
    }

    #[test]
    fn a_page_parses_to_exactly_its_entries_and_any_truncation_is_an_error(
        spaces in proptest::collection::vec(space(), 0..5), size in proptest::option::of(0usize..10), cut in any::<prop::sample::Index>(),
    ) {
        let entries: Vec<Value> = spaces.iter().map(|s| json!({"id": s.id, "displayName": s.display_name,
            "prettyName": s.pretty_name, "groupId": s.group_id, "description": s.description})).collect();
        let mut body = json!({"spaces": entries, "offset": 0, "limit": 100});
        if let Some(n) = size {
            body["size"] = json!(n);
        }
        let text = body.to_string();
        let page: Page<Space> = parse(text.as_bytes()).expect("a well-formed page parses");
        prop_assert_eq!(&page.items, &spaces);
        prop_assert_eq!(page.size, size);
        let at = cut.index(text.len());
        prop_assert!(parse::<Page<Space>>(&text.as_bytes()[..at]).is_err(), "half a page at {} parsed", at);
    }
}
