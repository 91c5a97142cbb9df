//! `IoParams`: one port or MMIO access, as crosvm describes it.

/// The direction and data of an access. The width is the slice's length.
#[derive(Debug)]
pub enum IoOperation<'a> {
    /// The guest reads: the handler fills the slice (little-endian). It starts zeroed.
    Read(&'a mut [u8]),
    /// The guest wrote these bytes.
    Write(&'a [u8]),
}

/// One access by the guest to a port (`Io`) or to unbacked guest physical memory (`Mmio`).
#[derive(Debug)]
pub struct IoParams<'a> {
    /// Port number for `Io`, guest physical address for `Mmio`.
    pub address: u64,
    /// What the guest does, with the data.
    pub operation: IoOperation<'a>,
}

impl IoParams<'_> {
    /// The access width in bytes.
    pub fn size(&self) -> usize {
        match &self.operation {
            IoOperation::Read(d) => d.len(),
            IoOperation::Write(d) => d.len(),
        }
    }
}
