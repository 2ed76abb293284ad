//! Kernel code addresses → `function+0xoffset`, from `/proc/kallsyms`.
//!
//! The table is read once, on the first address to resolve, and keeps only
//! text symbols; answers are cached because drop locations repeat.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

/// Where the kernel lists its symbols.
pub const KALLSYMS: &str = "/proc/kallsyms";

/// A lazily loaded kernel symbol table.
pub struct Symbols {
    path: PathBuf,
    table: Option<Vec<(u64, Arc<str>)>>,
    cache: HashMap<u64, Option<Arc<str>>>,
}

impl Symbols {
    /// Symbols from `path` (normally [`KALLSYMS`]), read on first use.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            table: None,
            cache: HashMap::new(),
        }
    }

    /// A table built from `(address, name)` pairs (for tests).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, &'static str)>) -> Self {
        let mut table: Vec<_> = pairs
            .into_iter()
            .map(|(address, name)| (address, Arc::from(name)))
            .collect();
        table.sort_by_key(|(address, _)| *address);
        Self {
            path: PathBuf::new(),
            table: Some(table),
            cache: HashMap::new(),
        }
    }

    /// `function+0xoffset` for `address`, when it falls in a known function.
    pub fn resolve(&mut self, address: u64) -> Option<Arc<str>> {
        if let Some(known) = self.cache.get(&address) {
            return known.clone();
        }
        let table = self.table.get_or_insert_with(|| load(&self.path));
        let index = table.partition_point(|(start, _)| *start <= address);
        let resolved = index.checked_sub(1).and_then(|index| {
            let (start, name) = &table[index];
            (*start != 0).then(|| Arc::from(format!("{name}+{:#x}", address - start)))
        });
        self.cache.insert(address, resolved.clone());
        resolved
    }
}

fn load(path: &PathBuf) -> Vec<(u64, Arc<str>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "kernel symbols unavailable; locations stay numeric");
            return Vec::new();
        }
    };
    let mut table: Vec<(u64, Arc<str>)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let address = u64::from_str_radix(fields.next()?, 16).ok()?;
            let kind = fields.next()?;
            let name = fields.next()?;
            matches!(kind, "t" | "T").then(|| (address, Arc::from(name)))
        })
        .collect();
    table.sort_by_key(|(address, _)| *address);
    if table.iter().all(|(address, _)| *address == 0) {
        tracing::warn!(path = %path.display(), "kernel symbol addresses are hidden (kptr_restrict); run as root");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_enclosing_function() {
        let mut symbols = Symbols::from_pairs([(0x1000, "nf_hook_slow"), (0x2000, "tcp_v4_rcv")]);
        assert_eq!(
            symbols.resolve(0x1010).as_deref(),
            Some("nf_hook_slow+0x10")
        );
        assert_eq!(symbols.resolve(0x2000).as_deref(), Some("tcp_v4_rcv+0x0"));
        assert_eq!(symbols.resolve(0x10), None);
    }
}
