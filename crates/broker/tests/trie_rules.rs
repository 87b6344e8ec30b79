//! The topic trie's matching rules (MQTT 5.0 section 4.7) and bookkeeping,
//! one scenario per test.

use mqdb_broker::trie::TopicTrie;

/// A trie where each subscriber is named after its filter, so a match can be
/// read as "which filters matched".
fn trie_of(filters: &[&'static str]) -> TopicTrie<&'static str, ()> {
    let mut trie = TopicTrie::new();
    for filter in filters {
        trie.insert(filter, *filter, ());
    }
    trie
}

fn matched<V>(trie: &TopicTrie<&'static str, V>, topic: &str) -> Vec<&'static str> {
    let mut hits = Vec::new();
    trie.matches(topic, |key, _| hits.push(*key));
    hits.sort_unstable();
    hits
}

#[test]
fn exact_filter_matches_only_the_identical_topic() {
    let trie = trie_of(&["sport/tennis"]);
    assert_eq!(matched(&trie, "sport/tennis"), ["sport/tennis"]);
    assert!(matched(&trie, "sport").is_empty());
    assert!(matched(&trie, "sport/tennis/player1").is_empty());
    assert!(matched(&trie, "sport/tennis/").is_empty());
    assert!(matched(&trie, "sport/tennisx").is_empty());
}

#[test]
fn levels_are_compared_without_normalisation() {
    // MQTT-4.7.3-4: no case folding, no trimming.
    let trie = trie_of(&["Sport/tennis", "sport/tennis "]);
    assert!(matched(&trie, "sport/tennis").is_empty());
    assert_eq!(matched(&trie, "Sport/tennis"), ["Sport/tennis"]);
}

#[test]
fn plus_matches_exactly_one_level() {
    let trie = trie_of(&["sport/tennis/+"]);
    assert_eq!(matched(&trie, "sport/tennis/player1"), ["sport/tennis/+"]);
    assert_eq!(matched(&trie, "sport/tennis/player2"), ["sport/tennis/+"]);
    assert!(matched(&trie, "sport/tennis/player1/ranking").is_empty());
    assert!(matched(&trie, "sport/tennis").is_empty());
}

#[test]
fn plus_matches_an_empty_level() {
    let trie = trie_of(&["sport/+", "+/+", "/+", "+"]);
    // `sport/` has an empty second level, which `+` matches; `sport` has none.
    assert_eq!(matched(&trie, "sport/"), ["+/+", "sport/+"]);
    assert!(matched(&trie, "sport").iter().all(|f| *f == "+"));
    // The spec's example: `/finance` is two levels, the first empty.
    assert_eq!(matched(&trie, "/finance"), ["+/+", "/+"]);
}

#[test]
fn plus_in_the_middle_matches_one_level() {
    let trie = trie_of(&["a/+/c"]);
    assert_eq!(matched(&trie, "a/b/c"), ["a/+/c"]);
    assert_eq!(matched(&trie, "a//c"), ["a/+/c"]);
    assert!(matched(&trie, "a/c").is_empty());
    assert!(matched(&trie, "a/b/b/c").is_empty());
}

#[test]
fn hash_matches_parent_level() {
    // Section 4.7.1.2: `sport/#` also matches `sport`.
    let trie = trie_of(&["sport/#"]);
    assert_eq!(matched(&trie, "sport"), ["sport/#"]);
}

#[test]
fn hash_matches_any_number_of_child_levels() {
    let trie = trie_of(&["sport/tennis/player1/#"]);
    for topic in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player1/",
        "sport/tennis/player1//",
    ] {
        assert_eq!(matched(&trie, topic), ["sport/tennis/player1/#"], "{topic}");
    }
    assert!(matched(&trie, "sport/tennis").is_empty());
    assert!(matched(&trie, "sport/tennis/player2").is_empty());
}

#[test]
fn hash_does_not_match_a_longer_sibling_level() {
    let trie = trie_of(&["sport/#"]);
    assert!(matched(&trie, "sports").is_empty());
    assert!(matched(&trie, "sports/tennis").is_empty());
}

#[test]
fn hash_alone_matches_every_topic() {
    let trie = trie_of(&["#"]);
    for topic in ["a", "a/b/c", "/", "", "/a", "a/", "a$/b"] {
        assert_eq!(matched(&trie, topic), ["#"], "{topic:?}");
    }
}

#[test]
fn plus_then_hash_matches_from_the_second_level() {
    let trie = trie_of(&["+/x/#"]);
    assert_eq!(matched(&trie, "a/x"), ["+/x/#"]);
    assert_eq!(matched(&trie, "a/x/y/z"), ["+/x/#"]);
    assert_eq!(matched(&trie, "/x"), ["+/x/#"]);
    assert!(matched(&trie, "a/y/x").is_empty());
    assert!(matched(&trie, "x").is_empty());
}

#[test]
fn empty_levels_are_levels_of_their_own() {
    let trie = trie_of(&["a//b", "a/b", "/a", "a", "a/"]);
    assert_eq!(matched(&trie, "a//b"), ["a//b"]);
    assert_eq!(matched(&trie, "a/b"), ["a/b"]);
    assert_eq!(matched(&trie, "/a"), ["/a"]);
    assert_eq!(matched(&trie, "a"), ["a"]);
    assert_eq!(matched(&trie, "a/"), ["a/"]);
    assert!(matched(&trie, "/a/").is_empty());
}

#[test]
fn leading_slash_topics_match_filters_with_an_empty_first_level() {
    let trie = trie_of(&["/#", "+/a", "#"]);
    assert_eq!(matched(&trie, "/a"), ["#", "+/a", "/#"]);
    assert_eq!(matched(&trie, "/"), ["#", "/#"]);
    // `/#` matches its parent: the topic made of one empty level.
    assert_eq!(matched(&trie, ""), ["#", "/#"]);
    assert_eq!(matched(&trie, "a"), ["#"]);
}

#[test]
fn wildcard_first_level_skips_dollar_topics() {
    // MQTT-4.7.2-1.
    let trie = trie_of(&["#", "+", "+/monitor/Clients", "+/#"]);
    assert!(matched(&trie, "$SYS").is_empty());
    assert!(matched(&trie, "$SYS/monitor/Clients").is_empty());
    assert!(matched(&trie, "$").is_empty());
    assert!(matched(&trie, "$/x").is_empty());
    // The same filters still match ordinary topics.
    assert_eq!(
        matched(&trie, "x/monitor/Clients"),
        ["#", "+/#", "+/monitor/Clients"]
    );
}

#[test]
fn dollar_filters_match_dollar_topics() {
    let trie = trie_of(&["$SYS/#", "$SYS/monitor/+", "$SYS/monitor/Clients"]);
    assert_eq!(
        matched(&trie, "$SYS/monitor/Clients"),
        ["$SYS/#", "$SYS/monitor/+", "$SYS/monitor/Clients"]
    );
    assert_eq!(matched(&trie, "$SYS"), ["$SYS/#"]);
}

#[test]
fn dollar_rule_applies_to_the_first_level_only() {
    let trie = trie_of(&["a/+", "a/#", "+/$b"]);
    assert_eq!(matched(&trie, "a/$b"), ["+/$b", "a/#", "a/+"]);
    // A `$` later in the first level is an ordinary character.
    let trie = trie_of(&["#", "+/b"]);
    assert_eq!(matched(&trie, "a$/b"), ["#", "+/b"]);
}

#[test]
fn insert_same_filter_and_key_replaces_the_value() {
    let mut trie = TopicTrie::new();
    assert_eq!(trie.insert("a/+", "alice", 0), None);
    assert_eq!(trie.insert("a/+", "alice", 2), Some(0));
    assert_eq!(trie.len(), 1);
    assert_eq!(trie.filter_count(), 1);
    let mut seen = Vec::new();
    trie.matches("a/b", |k, v| seen.push((*k, *v)));
    assert_eq!(seen, [("alice", 2)]);
}

#[test]
fn overlapping_filters_report_a_subscriber_once_per_filter() {
    let mut trie = TopicTrie::new();
    trie.insert("a/+", "alice", 1);
    trie.insert("a/#", "alice", 2);
    trie.insert("a/b", "bob", 0);
    let mut seen = Vec::new();
    trie.matches("a/b", |k, v| seen.push((*k, *v)));
    seen.sort_unstable();
    assert_eq!(seen, [("alice", 1), ("alice", 2), ("bob", 0)]);
    assert_eq!(trie.len(), 3);
    assert_eq!(trie.filter_count(), 3);
}

#[test]
fn many_subscribers_of_one_filter_all_match() {
    let mut trie = TopicTrie::new();
    for session in 0..1000u32 {
        trie.insert("jobs/+", session, ());
    }
    let mut count = 0;
    trie.matches("jobs/1", |_, _| count += 1);
    assert_eq!(count, 1000);
    assert_eq!(trie.filter_count(), 1);
}

#[test]
fn remove_returns_the_value_and_stops_matching() {
    let mut trie = TopicTrie::new();
    trie.insert("a/+", "alice", 1);
    trie.insert("a/+", "bob", 2);
    assert_eq!(trie.remove("a/+", &"alice"), Some(1));
    assert_eq!(matched(&trie, "a/b"), ["bob"]);
    assert_eq!(trie.len(), 1);
    assert_eq!(trie.filter_count(), 1);
    assert_eq!(trie.remove("a/+", &"bob"), Some(2));
    assert!(matched(&trie, "a/b").is_empty());
    assert!(trie.is_empty());
    assert_eq!(trie.filter_count(), 0);
}

#[test]
fn remove_of_something_never_inserted_is_none() {
    let mut trie = trie_of(&["a/b/c", "a/#"]);
    assert_eq!(trie.remove("a/b/c", &"someone else"), None);
    assert_eq!(
        trie.remove("a/b", &"a/b/c"),
        None,
        "a prefix is not the filter"
    );
    assert_eq!(
        trie.remove("a/+/c", &"a/b/c"),
        None,
        "wildcards are not expanded"
    );
    assert_eq!(
        trie.remove("a", &"a/#"),
        None,
        "`a` and `a/#` are distinct filters"
    );
    assert_eq!(trie.remove("x/y", &"x/y"), None);
    assert_eq!(trie.len(), 2);
    assert_eq!(trie.node_count(), 3);
}

#[test]
fn remove_prunes_nodes_that_lead_nowhere() {
    let mut trie = trie_of(&["a/b/c/d", "a/+/x/#", "#"]);
    // a, a/b, a/b/c, a/b/c/d, a/+, a/+/x
    assert_eq!(trie.node_count(), 6);
    trie.remove("a/b/c/d", &"a/b/c/d");
    assert_eq!(trie.node_count(), 3, "a/b, a/b/c, a/b/c/d are gone");
    trie.remove("a/+/x/#", &"a/+/x/#");
    assert_eq!(trie.node_count(), 0);
    trie.remove("#", &"#");
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 0);
}

#[test]
fn remove_keeps_nodes_still_in_use() {
    let mut trie = trie_of(&["a/b", "a/b/c", "a/b/#", "a/x"]);
    trie.remove("a/b/c", &"a/b/c");
    assert_eq!(matched(&trie, "a/b"), ["a/b", "a/b/#"]);
    assert_eq!(matched(&trie, "a/x"), ["a/x"]);
    trie.remove("a/b", &"a/b");
    assert_eq!(matched(&trie, "a/b/c"), ["a/b/#"]);
    trie.remove("a/b/#", &"a/b/#");
    assert_eq!(trie.node_count(), 2, "a and a/x remain");
    assert_eq!(matched(&trie, "a/x"), ["a/x"]);
}

#[test]
fn get_reads_one_filter_without_wildcard_matching() {
    let mut trie = TopicTrie::new();
    trie.insert("a/+", "alice", 1);
    trie.insert("#", "bob", 2);
    assert_eq!(trie.get("a/+", &"alice"), Some(&1));
    assert_eq!(trie.get("#", &"bob"), Some(&2));
    assert_eq!(trie.get("a/b", &"alice"), None);
    assert_eq!(trie.get("a/+", &"bob"), None);
}

#[test]
fn malformed_filters_do_not_panic() {
    // The codec rejects all of these; the trie must still behave.
    let odd = [
        "", "/", "//", "a/#/b", "#/#", "a+/b", "+a", "a/#b", "##", "++", "a/#/",
    ];
    let mut trie = TopicTrie::new();
    for filter in odd {
        trie.insert(filter, filter, ());
    }
    for topic in ["", "/", "a/#/b", "a+/b", "#", "+", "a", "$"] {
        let _ = matched(&trie, topic);
    }
    // A `#` that is not the last level is a literal that valid topics miss.
    assert!(!matched(&trie, "a/x/b").contains(&"a/#/b"));
    assert!(!matched(&trie, "a/b").contains(&"a+/b"));
    for filter in odd {
        assert_eq!(trie.remove(filter, &filter), Some(()), "{filter:?}");
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 0);
}

#[test]
fn deep_filters_do_not_overflow_the_stack() {
    // 65,535 bytes allow ~32k levels; test threads have small stacks, so any
    // recursion over the depth would crash here.
    let depth = 40_000;
    let plus = vec!["+"; depth].join("/");
    let literal = vec!["a"; depth].join("/");
    let mut trie = TopicTrie::new();
    trie.insert(&plus, "plus", ());
    trie.insert(&literal, "literal", ());
    trie.insert(&format!("{literal}/#"), "hash", ());
    assert_eq!(matched(&trie, &literal), ["hash", "literal", "plus"]);
    assert_eq!(trie.remove(&plus, &"plus"), Some(()));
    assert_eq!(matched(&trie, &literal), ["hash", "literal"]);
    drop(trie);

    let mut trie = TopicTrie::new();
    trie.insert(&plus, "plus", ());
    drop(trie);
}

#[test]
fn many_pending_wildcard_branches_are_all_followed() {
    // Every level of `a/a/.../a` has both a literal and a `+` child, so the
    // walk keeps one pending branch per level, more than fit inline.
    let depth = 40;
    let mut filters = Vec::new();
    for plus_at in 0..depth {
        let levels: Vec<&str> = (0..depth)
            .map(|i| if i == plus_at { "+" } else { "a" })
            .collect();
        filters.push(levels.join("/"));
    }
    filters.push(vec!["a"; depth].join("/"));
    let mut trie = TopicTrie::new();
    for (i, filter) in filters.iter().enumerate() {
        trie.insert(filter, i, ());
    }
    let mut hits = Vec::new();
    trie.matches(&vec!["a"; depth].join("/"), |k, _| hits.push(*k));
    hits.sort_unstable();
    assert_eq!(hits, (0..=depth).collect::<Vec<_>>());
}

#[test]
fn debug_output_is_a_summary() {
    let trie = trie_of(&["a/b", "a/#"]);
    assert_eq!(
        format!("{trie:?}"),
        "TopicTrie { entries: 2, filters: 2, nodes: 2, .. }"
    );
}
