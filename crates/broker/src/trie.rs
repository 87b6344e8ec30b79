//! The subscription index: MQTT topic filters in a trie, keyed by session.
//!
//! [`TopicTrie`] answers "which subscriptions match this topic name?" by
//! walking the trie along the topic's levels, never by scanning all filters,
//! so the cost of a match depends on the topic and on the filters that share
//! its prefixes, not on how many subscriptions exist.
//!
//! Matching follows MQTT 5.0 section 4.7. Filters and topic names arrive
//! already validated by `mqdb-codec`; the trie still accepts any string without
//! panicking (see [`TopicTrie::insert`] for what odd filters mean).
//!
//! It owns no locks and knows nothing of sessions beyond an opaque key; the
//! caller decides how it is shared between connections.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// A subscription index from topic filters to `(key, value)` entries.
///
/// `K` identifies the subscriber (a session id), `V` is whatever the caller
/// keeps per subscription (the subscription options). A subscriber has at most
/// one entry per filter, as MQTT requires (MQTT-3.8.4-3: a new subscription to
/// an existing filter replaces the old one).
///
/// ```
/// use mqdb_broker::trie::TopicTrie;
///
/// let mut trie = TopicTrie::new();
/// trie.insert("sport/tennis/+", "alice", 1);
/// trie.insert("sport/#", "bob", 0);
///
/// let mut hits = Vec::new();
/// trie.matches("sport/tennis/player1", |who, qos| hits.push((*who, *qos)));
/// hits.sort();
/// assert_eq!(hits, [("alice", 1), ("bob", 0)]);
/// ```
pub struct TopicTrie<K, V> {
    root: Node<K, V>,
    /// Number of `(filter, key)` entries.
    entries: usize,
    /// Number of distinct filters with at least one entry.
    filters: usize,
    /// Number of nodes below the root.
    nodes: usize,
}

// Invariants of the trie:
//
// - A node stands for one filter prefix: the path of edges from the root.
//   An edge is either a literal level (`literal`, keyed by the level's text,
//   which may be empty) or a single-level wildcard (`plus`). There is no `#`
//   edge: `#` can only be the last level, so a filter `p/#` is stored in the
//   `multi` slot of the node for `p`, and the filter `#` in the root's.
// - `exact` holds the entries of the filter that ends at this node; `multi`
//   those of the filter that is this node's prefix followed by `/#`.
// - Every node below the root has at least one entry (in `exact` or `multi`)
//   or at least one child: `remove` prunes the chain of nodes that became
//   empty, so memory follows the live subscriptions. `nodes` counts them.
// - `entries` is the total size of all `exact` and `multi` maps; `filters`
//   the number of those maps that are non-empty.
// - Nothing here recurses over the trie's depth (matching keeps an explicit
//   stack, `Drop` for `Node` is iterative): a client may subscribe to a filter
//   with thousands of levels, and that must not overflow a thread's stack.
struct Node<K, V> {
    // std's SipHash on purpose: levels come from clients, so the hasher must
    // resist collision flooding.
    literal: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    exact: HashMap<K, V>,
    multi: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            plus: None,
            exact: HashMap::new(),
            multi: HashMap::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn edge_count(&self) -> usize {
        self.literal.len() + usize::from(self.plus.is_some())
    }

    fn has_entries(&self) -> bool {
        !self.exact.is_empty() || !self.multi.is_empty()
    }

    fn child(&self, step: Step<'_>) -> Option<&Node<K, V>> {
        match step {
            Step::Literal(level) => self.literal.get(level),
            Step::Plus => self.plus.as_deref(),
        }
    }

    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Node<K, V>> {
        match step {
            Step::Literal(level) => self.literal.get_mut(level),
            Step::Plus => self.plus.as_deref_mut(),
        }
    }

    /// The child along `step`, created if missing; `created` counts new nodes.
    fn child_or_insert(&mut self, step: Step<'_>, created: &mut usize) -> &mut Node<K, V> {
        match step {
            Step::Literal(level) => {
                // Look up before `entry` so that walking an existing path does
                // not allocate a `Box<str>` per level.
                if !self.literal.contains_key(level) {
                    *created += 1;
                    self.literal.insert(level.into(), Node::default());
                }
                self.literal
                    .get_mut(level)
                    .expect("the level was inserted above if it was missing")
            }
            Step::Plus => self.plus.get_or_insert_with(|| {
                *created += 1;
                Box::default()
            }),
        }
    }

    fn remove_child(&mut self, step: Step<'_>) {
        match step {
            Step::Literal(level) => {
                self.literal.remove(level);
            }
            Step::Plus => self.plus = None,
        }
    }

    /// Moves this node's children into `out`, leaving it a leaf.
    fn detach_children(&mut self, out: &mut Vec<Node<K, V>>) {
        out.extend(self.literal.drain().map(|(_, child)| child));
        if let Some(plus) = self.plus.take() {
            out.push(*plus);
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    // The derived drop would recurse once per level; a deep filter (the codec
    // allows 65,535 bytes, so ~32k levels) would overflow the stack. Dropping
    // a subtree moves its nodes into a worklist instead, so every node is
    // dropped as a leaf.
    fn drop(&mut self) {
        if self.edge_count() == 0 {
            return;
        }
        let mut doomed = Vec::new();
        self.detach_children(&mut doomed);
        while let Some(mut node) = doomed.pop() {
            node.detach_children(&mut doomed);
        }
    }
}

/// One edge of a filter's path through the trie.
#[derive(Clone, Copy)]
enum Step<'f> {
    Literal(&'f str),
    Plus,
}

/// A filter split into its trie path and whether it ends in `#`.
#[derive(Clone, Copy)]
struct ParsedFilter<'f> {
    /// The levels before a trailing `#`; `None` for the filter `#` itself,
    /// which has no levels before the wildcard.
    path: Option<&'f str>,
    multi: bool,
}

impl<'f> ParsedFilter<'f> {
    fn new(filter: &'f str) -> Self {
        // MQTT-4.7.1-1: `#` is only a wildcard as the whole last level. A `#`
        // elsewhere (rejected by the codec) is kept as a literal level, which
        // no valid topic name can match (topic names contain no wildcards,
        // MQTT-3.3.2-2). The same goes for `+` that is not a whole level.
        if filter == "#" {
            ParsedFilter {
                path: None,
                multi: true,
            }
        } else if let Some(prefix) = filter.strip_suffix("/#") {
            ParsedFilter {
                path: Some(prefix),
                multi: true,
            }
        } else {
            ParsedFilter {
                path: Some(filter),
                multi: false,
            }
        }
    }

    fn steps(self) -> impl Iterator<Item = Step<'f>> {
        self.path
            .into_iter()
            .flat_map(|path| path.split('/'))
            .map(|level| match level {
                "+" => Step::Plus,
                literal => Step::Literal(literal),
            })
    }
}

impl<K, V> Default for TopicTrie<K, V> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            entries: 0,
            filters: 0,
            nodes: 0,
        }
    }
}

impl<K, V> fmt::Debug for TopicTrie<K, V> {
    // A summary, not the contents: a broker's trie can hold millions of
    // entries, and printing it must not recurse over its depth.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTrie")
            .field("entries", &self.entries)
            .field("filters", &self.filters)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl<K, V> TopicTrie<K, V>
where
    K: Eq + Hash,
{
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of `(filter, key)` entries.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the index holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of distinct filters that have at least one entry.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// Number of trie nodes (below the root) currently allocated; a measure
    /// of memory use that drops back to zero when every entry is removed.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Adds `key` as a subscriber of `filter` with `value`, returning the
    /// value it replaces if `key` was already subscribed to this filter.
    ///
    /// `filter` is expected to be valid: wildcards are whole levels, `#` is
    /// the last, the filter is not empty (MQTT-4.7.1-1, MQTT-4.7.1-2,
    /// MQTT-4.7.3-1). Any other string is accepted without panicking: a `#`
    /// or `+` that is not a whole level (or a `#` that is not the last
    /// level) is stored as a literal level that no valid topic name matches,
    /// and the empty filter is one empty level.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let parsed = ParsedFilter::new(filter);
        let mut created = 0;
        let mut node = &mut self.root;
        for step in parsed.steps() {
            node = node.child_or_insert(step, &mut created);
        }
        self.nodes += created;
        let slot = if parsed.multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let filter_was_new = slot.is_empty();
        let old = slot.insert(key, value);
        if old.is_none() {
            self.entries += 1;
            if filter_was_new {
                self.filters += 1;
            }
        }
        old
    }

    /// The value `key` holds for exactly `filter` (no wildcard matching).
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let parsed = ParsedFilter::new(filter);
        let mut node = &self.root;
        for step in parsed.steps() {
            node = node.child(step)?;
        }
        if parsed.multi {
            node.multi.get(key)
        } else {
            node.exact.get(key)
        }
    }

    /// Removes `key`'s subscription to exactly `filter`, returning its value,
    /// and frees the trie nodes that no longer lead to any entry.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let parsed = ParsedFilter::new(filter);

        // Find the filter's node and take the entry out.
        let mut node = &mut self.root;
        let mut depth = 0;
        for step in parsed.steps() {
            node = node.child_mut(step)?;
            depth += 1;
        }
        let slot = if parsed.multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let old = slot.remove(key)?;
        self.entries -= 1;
        if slot.is_empty() {
            self.filters -= 1;
            // A popular filter's map may have grown large; let it go with
            // its last subscriber even if the node itself stays.
            *slot = HashMap::new();
        }
        if depth > 0 && !node.has_entries() && node.edge_count() == 0 {
            self.prune(parsed, depth);
        }
        Some(old)
    }

    /// Cuts off the dead end of `parsed`'s path, whose last node (at `depth`)
    /// has just become empty. Done in two walks because a path of `&mut`
    /// borrows can't be kept: the first finds the deepest node that must stay
    /// (it has entries or other children, or is the root), the second removes
    /// the edge below it, dropping the chain of now-useless nodes.
    fn prune(&mut self, parsed: ParsedFilter<'_>, depth: usize) {
        let mut keep = 0;
        let mut node = &self.root;
        for (d, step) in parsed.steps().enumerate().take(depth - 1) {
            let Some(child) = node.child(step) else {
                return;
            };
            node = child;
            if node.has_entries() || node.edge_count() > 1 {
                keep = d + 1;
            }
        }

        let mut steps = parsed.steps();
        let mut node = &mut self.root;
        for step in steps.by_ref().take(keep) {
            let Some(child) = node.child_mut(step) else {
                return;
            };
            node = child;
        }
        if let Some(step) = steps.next() {
            node.remove_child(step);
            self.nodes -= depth - keep;
        }
    }

    /// Calls `f` once for every `(filter, key)` entry whose filter matches
    /// `topic`, in no particular order.
    ///
    /// The rules are those of MQTT 5.0 section 4.7: levels are compared as
    /// plain strings, an empty level included, with no normalisation
    /// (MQTT-4.7.3-4); `+` matches exactly one level, empty or not; `#`
    /// matches its parent level and any number of child levels (section
    /// 4.7.1.2); and a topic whose first level starts with `$` is not matched
    /// by a filter whose first level is `+` or `#` (MQTT-4.7.2-1).
    ///
    /// A subscriber with several matching filters is reported once per
    /// filter; how overlapping subscriptions are delivered (section 3.3.4)
    /// is the caller's choice. Nothing is allocated unless the walk has to
    /// keep more than a handful (16) of pending `+` branches at once.
    pub fn matches<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a K, &'a V)) {
        let mut pending = Pending::new();

        // MQTT-4.7.2-1: the Server MUST NOT match Topic Filters starting
        // with a wildcard character (# or +) with Topic Names beginning with
        // a $ character. Only the root's `#` slot and `+` edge are such
        // filters, so the rule is applied here once, not on every level.
        let root = &self.root;
        if !topic.starts_with('$') {
            // Section 4.7.1.2: `#` alone matches every topic.
            emit(&root.multi, &mut f);
            if let Some(plus) = &root.plus {
                pending.push(plus, split_level(topic).1);
            }
        }
        let (level, rest) = split_level(topic);
        if let Some(child) = root.literal.get(level) {
            pending.push(child, rest);
        }

        while let Some((mut node, mut rest)) = pending.pop() {
            // Follow the literal edge in place and keep only the `+` edge
            // for later, so a walk without wildcards needs no stack at all.
            loop {
                // Section 4.7.1.2 (MQTT-4.7.1-1 in 5.0, MQTT-4.7.1-2 in
                // 3.1.1): `p/#` matches `p` itself and everything below it;
                // this node stands for `p`, `rest` holds the levels left.
                emit(&node.multi, &mut f);
                let Some(remaining) = rest else {
                    // The topic ends here: filters that end here match.
                    emit(&node.exact, &mut f);
                    break;
                };
                let (level, next) = split_level(remaining);
                // Section 4.7.1.3 (MQTT-4.7.1-2): `+` matches exactly one
                // level, and an empty level is a level (`+/+` matches
                // `/finance`, the section's own example).
                if let Some(plus) = &node.plus {
                    pending.push(plus, next);
                }
                match node.literal.get(level) {
                    Some(child) => {
                        node = child;
                        rest = next;
                    }
                    None => break,
                }
            }
        }
    }
}

fn emit<'a, K, V>(entries: &'a HashMap<K, V>, f: &mut impl FnMut(&'a K, &'a V)) {
    for (key, value) in entries {
        f(key, value);
    }
}

/// Splits off the first level of `topic`. The rest is `None` when `topic` was
/// the last level, and `Some("")` when one empty level follows (`a/`).
fn split_level(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (topic, None),
    }
}

/// How many pending branches [`TopicTrie::matches`] keeps on the stack before
/// it spills to the heap. Each `+` on the way to the topic's depth adds at
/// most one; real filters rarely have more than a few.
const INLINE_PENDING: usize = 16;

type Frame<'t, 's, K, V> = (&'t Node<K, V>, Option<&'s str>);

/// The walk's LIFO worklist: a fixed array first, a `Vec` only for deep
/// walks, so that matching does not allocate in the common case.
struct Pending<'t, 's, K, V> {
    inline: [Option<Frame<'t, 's, K, V>>; INLINE_PENDING],
    len: usize,
    spill: Vec<Frame<'t, 's, K, V>>,
}

impl<'t, 's, K, V> Pending<'t, 's, K, V> {
    fn new() -> Self {
        Pending {
            inline: [None; INLINE_PENDING],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, node: &'t Node<K, V>, rest: Option<&'s str>) {
        if self.len < INLINE_PENDING {
            self.inline[self.len] = Some((node, rest));
            self.len += 1;
        } else {
            self.spill.push((node, rest));
        }
    }

    fn pop(&mut self) -> Option<Frame<'t, 's, K, V>> {
        // The spill only fills once the array is full, so its top is the
        // most recent push.
        if let Some(frame) = self.spill.pop() {
            return Some(frame);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.inline[self.len].take()
    }
}
