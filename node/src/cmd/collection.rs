//! What the command families of collection types (hashes, lists, sorted sets) share: finding a
//! key's value of the right type, and changing it so that memory accounting stays
//! exact and a key exists only while its collection has elements.

use super::CmdError;
use crate::store::{Entry, Hash, List, Object, SlotRef, ZSet};

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

impl Collection for ZSet {
    fn of(e: &Entry) -> Option<&Self> {
        match e.as_object() {
            Some(Object::ZSet(z)) => Some(z),
            _ => None,
        }
    }

    fn of_mut(e: &mut Entry) -> Option<&mut Self> {
        match e.as_object_mut() {
            Some(Object::ZSet(z)) => Some(z),
            _ => None,
        }
    }

    fn into_object(self) -> Object {
        Object::ZSet(self)
    }

    fn is_empty(&self) -> bool {
        ZSet::is_empty(self)
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
    update_if(slot, key, now, create, f, |_| true)
}

/// [`update`] for a write that may change nothing (HDEL of absent fields, LREM with
/// no match): `changed` tells from `f`'s result, so that WATCH sees only real changes,
/// as in Redis. A failed `f` changed nothing.
pub fn update_if<T: Collection, R>(
    slot: &mut SlotRef<'_>,
    key: &[u8],
    now: u64,
    create: bool,
    f: impl FnOnce(&mut T) -> Result<R, CmdError>,
    changed: impl FnOnce(&R) -> bool,
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
    let outcome = slot.modify_if(key, now, |e| {
        let res = T::of_mut(e)
            .ok_or(CmdError::WrongType)
            .and_then(|c| f(c).map(|r| (r, c.is_empty())));
        let did = matches!(&res, Ok((r, _)) if changed(r));
        (res, did)
    });
    match outcome {
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
