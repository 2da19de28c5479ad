//! What the command families of collection types (hashes, lists, …) share: finding a
//! key's value of the right type, and changing it so that memory accounting stays
//! exact and a key exists only while its collection has elements.

use super::CmdError;
use crate::store::{Entry, Hash, List, Object, SlotRef};

/// A collection value type, as the commands of its family see it.
pub trait Collection: Default {
    /// The value of `e` if it is of this type.
    fn of(e: &Entry) -> Option<&Self>;
    fn of_mut(e: &mut Entry) -> Option<&mut Self>;
    fn into_object(self) -> Object;
    fn is_empty(&self) -> bool;
}

impl Collection for Hash {
    fn of(e: &Entry) -> Option<&Self> {
        match e.as_object() {
            Some(Object::Hash(h)) => Some(h),
            _ => None,
        }
    }

    fn of_mut(e: &mut Entry) -> Option<&mut Self> {
        match e.as_object_mut() {
            Some(Object::Hash(h)) => Some(h),
            _ => None,
        }
    }

    fn into_object(self) -> Object {
        Object::Hash(self)
    }

    fn is_empty(&self) -> bool {
        Hash::is_empty(self)
    }
}

impl Collection for List {
    fn of(e: &Entry) -> Option<&Self> {
        match e.as_object() {
            Some(Object::List(l)) => Some(l),
            _ => None,
        }
    }

    fn of_mut(e: &mut Entry) -> Option<&mut Self> {
        match e.as_object_mut() {
            Some(Object::List(l)) => Some(l),
            _ => None,
        }
    }

    fn into_object(self) -> Object {
        Object::List(self)
    }

    fn is_empty(&self) -> bool {
        List::is_empty(self)
    }
}

/// Whether `key` holds a `T` (a write's lookup: no hit or miss counted); WRONGTYPE
/// for another type.
pub fn probe<T: Collection>(slot: &mut SlotRef<'_>, key: &[u8], now: u64) -> Result<bool, CmdError> {
    match slot.get(key, now) {
        None => Ok(false),
        Some(e) => T::of(e).map(|_| true).ok_or(CmdError::WrongType),
    }
}

/// Runs `f` on the `T` at `key` for a write, keeping memory accounting exact. A
/// missing key is created (when `create`) with an empty collection that is stored
/// only if `f` leaves elements in it; a collection that `f` empties is deleted. `f`
/// must not change the collection when it fails. `None` when the key is missing and
/// not created.
pub fn update<T: Collection, R>(
    slot: &mut SlotRef<'_>,
    key: &[u8],
    now: u64,
    create: bool,
    f: impl FnOnce(&mut T) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    if !probe::<T>(slot, key, now)? {
        if !create {
            return Ok(None);
        }
        let mut c = T::default();
        let r = f(&mut c)?;
        if !c.is_empty() {
            slot.insert(Entry::object(key, c.into_object(), 0, 0), now);
        }
        return Ok(Some(r));
    }
    let changed = slot.modify(key, now, |e| -> Result<(R, bool), CmdError> {
        let c = T::of_mut(e).ok_or(CmdError::WrongType)?;
        let r = f(c)?;
        Ok((r, c.is_empty()))
    });
    match changed {
        None => Ok(None),
        Some(res) => {
            let (r, now_empty) = res?;
            if now_empty {
                slot.remove(key, now);
            }
            Ok(Some(r))
        }
    }
}
