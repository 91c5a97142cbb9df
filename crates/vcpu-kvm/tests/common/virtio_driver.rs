//! A virtio-mmio driver written in the test: registers through the transport's MMIO
//! handler (as a vcpu's exit would), rings and buffers in guest memory.

#![allow(dead_code)]

use vcpu_kvm::vmm::virtio::MmioTransport;
use vcpu_kvm::{IoOperation, IoParams, KvmVm};

pub const STATUS: u64 = 0x70;
pub const NEEDS_RESET: u32 = 64;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
pub const DESC: u64 = 0x10_0000;
pub const AVAIL: u64 = 0x11_0000;
pub const USED: u64 = 0x12_0000;
pub const BUFFERS: u64 = 0x20_0000;
pub const WRITE: u16 = 2;
pub const NEXT: u16 = 1;

pub struct Driver<'a> {
    pub vm: &'a KvmVm,
    pub dev: &'a MmioTransport,
    pub size: u16,
    avail_idx: u16,
    /// Added to the ring addresses: drivers of two devices in one VM keep theirs apart.
    rings: u64,
}

impl<'a> Driver<'a> {
    pub fn new(vm: &'a KvmVm, dev: &'a MmioTransport) -> Self {
        Self::with_rings_at(vm, dev, 0)
    }

    /// A driver whose rings sit `offset` bytes past the usual addresses.
    pub fn with_rings_at(vm: &'a KvmVm, dev: &'a MmioTransport, offset: u64) -> Self {
        Driver {
            vm,
            dev,
            size: 16,
            avail_idx: 0,
            rings: offset,
        }
    }

    pub fn read(&self, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        assert!(self.dev.handle(IoParams {
            address: self.dev.base() + offset,
            operation: IoOperation::Read(&mut data),
        }));
        u32::from_le_bytes(data)
    }

    pub fn write(&self, offset: u64, value: u32) {
        assert!(self.dev.handle(IoParams {
            address: self.dev.base() + offset,
            operation: IoOperation::Write(&value.to_le_bytes()),
        }));
    }

    /// Negotiates VERSION_1 plus `features`; the status after FEATURES_OK.
    pub fn negotiate(&self, features: u64) -> u32 {
        self.write(STATUS, 0);
        self.write(STATUS, 1);
        self.write(STATUS, 3);
        let all = features | (1 << 32);
        self.write(0x24, 0);
        self.write(0x20, all as u32);
        self.write(0x24, 1);
        self.write(0x20, (all >> 32) as u32);
        self.write(STATUS, 3 | FEATURES_OK);
        self.read(STATUS)
    }

    /// Sets up queue 0 with `size` entries at the fixed ring addresses, its rings new.
    pub fn queue(&mut self, size: u32) {
        self.vm.write(AVAIL + self.rings, &[0; 4]).unwrap();
        self.vm.write(USED + self.rings, &[0; 4]).unwrap();
        self.avail_idx = 0;
        self.write(0x30, 0);
        self.write(0x38, size);
        self.write(0x80, (DESC + self.rings) as u32);
        self.write(0x84, 0);
        self.write(0x90, (AVAIL + self.rings) as u32);
        self.write(0x94, 0);
        self.write(0xa0, (USED + self.rings) as u32);
        self.write(0xa4, 0);
        self.write(0x44, 1);
        self.size = size as u16;
    }

    /// Negotiates, sets up queue 0 and sets DRIVER_OK.
    pub fn start(&mut self, features: u64) {
        assert_ne!(self.negotiate(features) & FEATURES_OK, 0);
        self.queue(16);
        self.write(STATUS, 3 | FEATURES_OK | DRIVER_OK);
    }

    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.vm.write(DESC + self.rings + i as u64 * 16, &d).unwrap();
    }

    /// Makes descriptor `head` available and notifies; the used length, if the device
    /// used it.
    pub fn submit(&mut self, head: u16) -> Option<u32> {
        let slot = self.avail_idx % self.size;
        self.vm
            .write(AVAIL + self.rings + 4 + slot as u64 * 2, &head.to_le_bytes())
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.vm
            .write(AVAIL + self.rings + 2, &self.avail_idx.to_le_bytes())
            .unwrap();
        let before = self.used_idx();
        self.write(0x50, 0);
        (self.used_idx() != before).then(|| {
            let mut e = [0u8; 8];
            self.vm
                .read(
                    USED + self.rings + 4 + ((self.used_idx().wrapping_sub(1)) % self.size) as u64 * 8,
                    &mut e,
                )
                .unwrap();
            u32::from_le_bytes(e[4..8].try_into().unwrap())
        })
    }

    pub fn used_idx(&self) -> u16 {
        let mut b = [0u8; 2];
        self.vm.read(USED + self.rings + 2, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Sets the available index directly (a driver that lies about it).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.vm.write(AVAIL + self.rings + 2, &idx.to_le_bytes()).unwrap();
    }

    /// Writes available-ring entry `slot`.
    pub fn set_avail(&self, slot: u16, head: u16) {
        self.vm
            .write(
                AVAIL + self.rings + 4 + (slot % self.size) as u64 * 2,
                &head.to_le_bytes(),
            )
            .unwrap();
    }

    /// Writes the whole descriptor table.
    pub fn set_table(&self, table: &[u8]) {
        self.vm.write(DESC + self.rings, table).unwrap();
    }
}
