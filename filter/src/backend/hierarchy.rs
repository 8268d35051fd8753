//! The metric hierarchy: which metric is the parent of which (methods under `hits`).
//!
//! 3scale adds a child's usage to every ancestor, and checks the limits of the requested metrics
//! *and their ancestors*. Tollgate needs the same view to tell which usage reports constrain a
//! request and how much of it lands on each.

use crate::usage::Usage;

/// Parent links between metrics, as apisonator's `<hierarchy>` section lists them.
///
/// Stored as (child, parent) pairs: 3scale gives every metric at most one parent, and the
/// questions asked are "what are this metric's ancestors", so a child-to-parent lookup is what
/// matters. Hierarchies are a handful of metrics, so a linear scan beats any map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchy {
    parents: Vec<(String, String)>,
}

impl Hierarchy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `child` belongs to `parent`.
    ///
    /// Repeats are ignored (apisonator lists a parent once per usage report), as are a second
    /// parent for the same child (3scale allows one) and self-links.
    pub fn add(&mut self, parent: &str, child: &str) {
        if parent == child || self.parent(child).is_some() {
            return;
        }
        self.parents.push((child.to_owned(), parent.to_owned()));
    }

    /// The direct parent of `metric`, if the hierarchy knows one.
    pub fn parent(&self, metric: &str) -> Option<&str> {
        self.parents
            .iter()
            .find(|(child, _)| child == metric)
            .map(|(_, parent)| parent.as_str())
    }

    /// The direct children of `parent`, in the order they were added.
    pub fn children<'h>(&'h self, parent: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.parents
            .iter()
            .filter(move |(_, p)| p == parent)
            .map(|(child, _)| child.as_str())
    }

    /// Every (parent, child) link, in the order they were added.
    pub fn links(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parents
            .iter()
            .map(|(child, parent)| (parent.as_str(), child.as_str()))
    }

    /// The parent of `metric`, its grandparent, and so on up to the root.
    ///
    /// Stops at the first metric already seen (or `metric` itself), so a cyclic hierarchy from a
    /// confused backend ends instead of looping forever.
    pub fn ancestors<'h>(&'h self, metric: &'h str) -> Ancestors<'h> {
        Ancestors {
            hierarchy: self,
            start: metric,
            current: metric,
            yielded: 0,
        }
    }

    /// Whether `ancestor` is a proper ancestor of `metric`.
    pub fn is_ancestor(&self, ancestor: &str, metric: &str) -> bool {
        self.ancestors(metric).any(|a| a == ancestor)
    }

    /// How much of `usage` lands on `metric`: its own delta plus every descendant's, as 3scale
    /// propagates child usage to parents.
    pub fn applied_delta(&self, metric: &str, usage: &Usage) -> u64 {
        usage
            .iter()
            .filter(|(name, _)| *name == metric || self.is_ancestor(metric, name))
            .fold(0, |total, (_, delta)| total.saturating_add(delta))
    }

    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// The number of parent links.
    pub fn len(&self) -> usize {
        self.parents.len()
    }
}

/// Iterator returned by [`Hierarchy::ancestors`].
#[derive(Clone, Debug)]
pub struct Ancestors<'h> {
    hierarchy: &'h Hierarchy,
    start: &'h str,
    current: &'h str,
    yielded: usize,
}

impl<'h> Iterator for Ancestors<'h> {
    type Item = &'h str;

    fn next(&mut self) -> Option<&'h str> {
        let parent = self.hierarchy.parent(self.current)?;
        if parent == self.start || self.already_yielded(parent) {
            // A cycle: make the iterator stay finished.
            self.current = self.start;
            self.yielded = usize::MAX;
            return None;
        }
        self.current = parent;
        self.yielded = self.yielded.saturating_add(1);
        Some(parent)
    }
}

impl Ancestors<'_> {
    /// Walks again from the start: hierarchies are a few levels deep, so this stays cheaper
    /// than allocating a visited set on every call.
    fn already_yielded(&self, metric: &str) -> bool {
        if self.yielded == usize::MAX {
            return true;
        }
        let mut walk = self.start;
        for _ in 0..self.yielded {
            match self.hierarchy.parent(walk) {
                Some(parent) if parent == metric => return true,
                Some(parent) => walk = parent,
                None => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    use crate::usage::usage_of as usage;

    fn three_levels() -> Hierarchy {
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("hits", "api");
        hierarchy.add("api", "get_hello");
        hierarchy.add("api", "post_hello");
        hierarchy.add("hits", "other");
        hierarchy
    }

    #[test]
    fn duplicates_and_self_links_are_ignored() {
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("hits", "get_hello");
        hierarchy.add("hits", "get_hello");
        hierarchy.add("hits", "hits");
        hierarchy.add("other", "get_hello");
        assert_eq!(hierarchy.len(), 1);
        assert_eq!(hierarchy.parent("get_hello"), Some("hits"));
        assert_eq!(
            hierarchy.links().collect::<Vec<_>>(),
            vec![("hits", "get_hello")]
        );
    }

    #[test]
    fn ancestors_climb_every_level() {
        let hierarchy = three_levels();
        assert_eq!(
            hierarchy.ancestors("get_hello").collect::<Vec<_>>(),
            vec!["api", "hits"]
        );
        assert_eq!(hierarchy.ancestors("api").collect::<Vec<_>>(), vec!["hits"]);
        assert_eq!(hierarchy.ancestors("hits").count(), 0);
        assert_eq!(hierarchy.ancestors("unknown").count(), 0);
        assert_eq!(
            hierarchy.children("api").collect::<Vec<_>>(),
            vec!["get_hello", "post_hello"]
        );
        assert!(hierarchy.is_ancestor("hits", "post_hello"));
        assert!(!hierarchy.is_ancestor("post_hello", "hits"));
        assert!(!hierarchy.is_ancestor("get_hello", "get_hello"));
    }

    #[test]
    fn cycles_end() {
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("b", "a");
        hierarchy.add("c", "b");
        hierarchy.add("a", "c");
        assert_eq!(hierarchy.ancestors("a").collect::<Vec<_>>(), vec!["b", "c"]);

        // A cycle above the starting metric.
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("b", "leaf");
        hierarchy.add("c", "b");
        hierarchy.add("d", "c");
        hierarchy.add("b", "d");
        let mut ancestors = hierarchy.ancestors("leaf");
        assert_eq!(ancestors.by_ref().collect::<Vec<_>>(), vec!["b", "c", "d"]);
        assert_eq!(ancestors.next(), None);
    }

    #[test]
    fn applied_delta_adds_descendants() {
        let hierarchy = three_levels();
        let usage = usage(&[
            ("hits", 1),
            ("get_hello", 2),
            ("post_hello", 4),
            ("other", 8),
        ]);
        assert_eq!(hierarchy.applied_delta("hits", &usage), 15);
        assert_eq!(hierarchy.applied_delta("api", &usage), 6);
        assert_eq!(hierarchy.applied_delta("get_hello", &usage), 2);
        assert_eq!(hierarchy.applied_delta("unrelated", &usage), 0);
        assert_eq!(Hierarchy::new().applied_delta("hits", &usage), 1);
    }

    #[test]
    fn applied_delta_saturates() {
        let hierarchy = three_levels();
        let usage = usage(&[("get_hello", u64::MAX), ("post_hello", 5)]);
        assert_eq!(hierarchy.applied_delta("hits", &usage), u64::MAX);
    }
}
