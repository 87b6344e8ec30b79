//! The trie against a naive matcher: random filter sets, random topics and
//! random removals over a small alphabet of levels, so that empty levels,
//! `$`-topics, `+` and `#` collide often. The naive matcher compares a filter
//! with a topic level by level, straight from MQTT 5.0 section 4.7; the trie
//! must report exactly the entries whose filter it accepts.

use std::collections::{BTreeMap, BTreeSet};

use mqdb_broker::trie::TopicTrie;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// The reference: does `filter` match `topic`? Filters are valid here (`+`
/// and `#` are whole levels, `#` only last), as the codec guarantees.
fn naive_matches(filter: &str, topic: &str) -> bool {
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    // MQTT-4.7.2-1: no wildcard-first filter matches a `$` topic.
    if topic[0].starts_with('$') && (filter[0] == "+" || filter[0] == "#") {
        return false;
    }
    for (i, level) in filter.iter().enumerate() {
        match *level {
            // `#` matches the parent level and any number of children: the
            // levels before it have matched, whatever comes after.
            "#" => return true,
            // `+` matches any one level, empty or not, but it must exist.
            "+" if i < topic.len() => {}
            literal if topic.get(i) == Some(&literal) => {}
            _ => return false,
        }
    }
    filter.len() == topic.len()
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u8, u32),
    /// A removal that may or may not name an existing entry.
    Remove(String, u8),
    /// A removal of an entry that exists (if any does).
    RemoveExisting(Index),
}

fn topic() -> impl Strategy<Value = String> {
    let level = select(vec!["a", "b", "", "$sys", "$", "a$"]);
    prop::collection::vec(level, 1..=4).prop_map(|levels| levels.join("/"))
}

fn filter() -> impl Strategy<Value = String> {
    let level = select(vec!["a", "b", "", "$sys", "+"]);
    (prop::collection::vec(level, 0..=4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if levels.is_empty() || hash {
            levels.push("#");
        }
        levels.join("/")
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (filter(), 0..3u8, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        1 => (filter(), 0..3u8).prop_map(|(f, k)| Op::Remove(f, k)),
        2 => any::<Index>().prop_map(Op::RemoveExisting),
    ]
}

type Model = BTreeMap<(String, u8), u32>;
/// The value carries its filter so that a match can be traced to it.
type Trie = TopicTrie<u8, (String, u32)>;

/// The trie nodes the model's filters need: one per distinct path prefix,
/// where a trailing `#` is a slot on its parent, not a node.
fn expected_nodes(model: &Model) -> usize {
    let mut prefixes = BTreeSet::new();
    for (filter, _) in model.keys() {
        let path = if filter == "#" {
            None
        } else {
            Some(filter.strip_suffix("/#").unwrap_or(filter))
        };
        let levels: Vec<&str> = path.into_iter().flat_map(|p| p.split('/')).collect();
        for depth in 1..=levels.len() {
            prefixes.insert(levels[..depth].to_vec());
        }
    }
    prefixes.len()
}

fn check(trie: &Trie, model: &Model, topics: &[String]) -> Result<(), TestCaseError> {
    prop_assert_eq!(trie.len(), model.len());
    prop_assert_eq!(trie.is_empty(), model.is_empty());
    let filters: BTreeSet<&String> = model.keys().map(|(f, _)| f).collect();
    prop_assert_eq!(trie.filter_count(), filters.len());
    prop_assert_eq!(trie.node_count(), expected_nodes(model), "pruning");

    for topic in topics {
        let mut got = Vec::new();
        trie.matches(topic, |key, (filter, value)| {
            got.push((filter.clone(), *key, *value))
        });
        got.sort();
        let want: Vec<(String, u8, u32)> = model
            .iter()
            .filter(|((filter, _), _)| naive_matches(filter, topic))
            .map(|((filter, key), value)| (filter.clone(), *key, *value))
            .collect();
        prop_assert_eq!(got, want, "topic {:?}", topic);
    }
    for ((filter, key), value) in model {
        prop_assert_eq!(trie.get(filter, key), Some(&(filter.clone(), *value)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_naive_matcher(
        ops in prop::collection::vec(op(), 1..60),
        topics in prop::collection::vec(topic(), 1..12),
    ) {
        let mut trie = Trie::new();
        let mut model = Model::new();

        for op in ops {
            match op {
                Op::Insert(filter, key, value) => {
                    let old = trie.insert(&filter, key, (filter.clone(), value));
                    let want = model.insert((filter.clone(), key), value);
                    prop_assert_eq!(old, want.map(|v| (filter, v)));
                }
                Op::Remove(filter, key) => {
                    let old = trie.remove(&filter, &key);
                    let want = model.remove(&(filter.clone(), key));
                    prop_assert_eq!(old, want.map(|v| (filter, v)));
                }
                Op::RemoveExisting(index) => {
                    if model.is_empty() {
                        continue;
                    }
                    let (filter, key) = model.keys().nth(index.index(model.len())).cloned().unwrap();
                    let old = trie.remove(&filter, &key);
                    let want = model.remove(&(filter.clone(), key));
                    prop_assert_eq!(old, want.map(|v| (filter, v)));
                }
            }
            check(&trie, &model, &topics)?;
        }

        // Emptying the trie in any order frees every node.
        for (filter, key) in model.keys().cloned().collect::<Vec<_>>() {
            prop_assert!(trie.remove(&filter, &key).is_some());
            model.remove(&(filter, key));
            check(&trie, &model, &topics)?;
        }
        prop_assert_eq!(trie.node_count(), 0);
    }

    /// The naive matcher and the trie agree on single filters too, which is
    /// where a disagreement is easiest to read when it shrinks.
    #[test]
    fn single_filter_agrees_with_naive_matcher(filter in filter(), topic in topic()) {
        let mut trie = TopicTrie::new();
        trie.insert(&filter, (), ());
        let mut hits = 0;
        trie.matches(&topic, |_, _| hits += 1);
        prop_assert_eq!(hits == 1, naive_matches(&filter, &topic));
        prop_assert!(hits <= 1);
    }
}

/// The reference itself, on the spec's own examples, so that the property
/// test is not comparing two copies of one mistake.
#[test]
fn naive_matcher_follows_the_spec_examples() {
    let cases = [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("#", "$SYS/x", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
    ];
    for (filter, topic, want) in cases {
        assert_eq!(naive_matches(filter, topic), want, "{filter} vs {topic}");
    }
}
