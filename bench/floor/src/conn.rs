//! Per-connection buffers shared by both loops, and the socket option they both set.

use std::os::fd::RawFd;

use crate::resp;

#[derive(Default)]
pub struct Conn {
    /// Bytes of a request that has not fully arrived yet.
    partial: Vec<u8>,
    /// Replies not yet handed to the kernel.
    pub out: Vec<u8>,
}

impl Conn {
    /// Answers the complete requests in `partial` + `data`, keeping an incomplete tail.
    pub fn received(&mut self, data: &[u8]) -> Result<(), resp::ProtocolError> {
        if self.partial.is_empty() {
            let used = resp::serve(data, &mut self.out)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            self.partial.extend_from_slice(data);
            let used = resp::serve(&self.partial, &mut self.out)?;
            self.partial.drain(..used);
        }
        Ok(())
    }
}

/// TCP_NODELAY, as Redis and ringcache set it on every client socket.
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket and the option value is a live c_int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
