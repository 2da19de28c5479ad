//! Values other than strings. Each type keeps its own byte count so that memory
//! accounting stays exact without walking the value.

use hashbrown::HashMap;

/// Per-field overhead charged for a hash field (two boxed slices and a table slot).
const HASH_FIELD_OVERHEAD: usize = 48;

/// A non-string value.
#[derive(Debug, Clone)]
pub enum Object {
    Hash(Hash),
}

impl Object {
    /// The Redis `TYPE` name of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::Hash(_) => "hash",
        }
    }

    /// Bytes charged for the value beyond the entry block.
    pub fn mem_size(&self) -> usize {
        match self {
            Object::Hash(h) => h.mem_size(),
        }
    }
}

/// A Redis hash: field → value.
#[derive(Debug, Clone, Default)]
pub struct Hash {
    map: HashMap<Box<[u8]>, Box<[u8]>>,
    bytes: usize,
}

impl Hash {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.map.get(field).map(|v| &**v)
    }

    /// Sets a field; returns true when the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        match self.map.get_mut(field) {
            Some(v) => {
                self.bytes = self.bytes - v.len() + value.len();
                *v = value.into();
                false
            }
            None => {
                self.bytes += field.len() + value.len() + HASH_FIELD_OVERHEAD;
                self.map.insert(field.into(), value.into());
                true
            }
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self.map.remove(field) {
            Some(v) => {
                self.bytes -= field.len() + v.len() + HASH_FIELD_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn mem_size(&self) -> usize {
        self.bytes + 64
    }
}
