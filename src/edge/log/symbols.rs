//! Symbol names ↔ small integer ids, so that filtering a record for a subscriber is a bit test.

use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

pub type SymbolId = u32;

/// Symbol names ↔ small integer ids, so per-record filtering is a bit test.
#[derive(Default)]
pub struct Symbols {
    ids: RwLock<FxHashMap<Arc<str>, SymbolId>>,
    names: RwLock<Vec<Arc<str>>>,
}

impl Symbols {
    pub fn get(&self, name: &str) -> Option<SymbolId> {
        self.ids.read().expect("symbols lock").get(name).copied()
    }

    pub fn intern(&self, name: &str) -> SymbolId {
        if let Some(id) = self.get(name) {
            return id;
        }
        let mut ids = self.ids.write().expect("symbols lock");
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let mut names = self.names.write().expect("symbols lock");
        let id = names.len() as SymbolId;
        let name: Arc<str> = Arc::from(name);
        names.push(name.clone());
        ids.insert(name, id);
        id
    }

    pub fn name(&self, id: SymbolId) -> Arc<str> {
        self.names.read().expect("symbols lock")[id as usize].clone()
    }
}

/// A set of symbol ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolSet(Vec<u64>);

impl SymbolSet {
    pub fn insert(&mut self, id: SymbolId) {
        let (word, bit) = ((id / 64) as usize, id % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    #[inline]
    pub fn contains(&self, id: SymbolId) -> bool {
        let (word, bit) = ((id / 64) as usize, id % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }
}

/// `None` lets every symbol through.
#[inline]
pub fn passes(filter: Option<&SymbolSet>, id: SymbolId) -> bool {
    filter.is_none_or(|f| f.contains(id))
}
