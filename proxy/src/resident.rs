//! Lets go of start-up's code once a sidecar is ready.
//!
//! Start-up (CLI, YAML, component construction, TLS set-up) runs MB of code
//! that never runs again, and the kernel maps a binary 64 KB around every
//! page touched, so all of it would stay resident for the sidecar's life.
//! Once ready, the binary's and its libraries' read-only file-backed
//! segments are unmapped from this process (`MADV_DONTNEED`): the pages stay
//! in the page cache, and the code the sidecar runs from then on faults back
//! in (minor faults, microseconds, once). Release builds keep that code
//! together (`link-order.txt`), so what comes back is a few dense MB.
//!
//! Only segments without write permission are touched: their pages are
//! exactly the file's, so dropping them loses nothing. Writable segments,
//! RELRO (relocated at load, then made read-only) and any object with text
//! relocations (its code patched at load) hold data the file does not and
//! are never dropped.

/// Unmaps the read-only segments of every loaded object; returns the bytes
/// advised (0 where unsupported).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn drop_startup_code() -> usize {
    let page = page_size();
    let mut total = 0;
    for (start, end) in readonly_segments() {
        // Inward to whole pages: a page shared with a writable neighbour
        // stays.
        let (s, e) = (start.div_ceil(page) * page, end / page * page);
        if e <= s {
            continue;
        }
        // SAFETY: [s, e) lies inside a mapped, non-writable, file-backed
        // segment; DONTNEED on it only drops page-table entries, which the
        // next access refills from the same file.
        if unsafe { libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_DONTNEED) } == 0 {
            total += e - s;
        }
    }
    total
}

/// The non-writable, file-backed load segments of the program and its
/// libraries, as [start, end) addresses.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn readonly_segments() -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the loader's program headers for the
    // duration of the call and pushes into the Vec passed as `data`.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), (&mut ranges as *mut Vec<_>).cast());
    }
    ranges
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn drop_startup_code() -> usize {
    0
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// `dl_iterate_phdr` callback: the non-writable `PT_LOAD` segments of the
/// main program (empty name) and of libraries loaded from a path (not the
/// vDSO, which is no file).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid info; `data` is our Vec.
    let (info, ranges) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a NUL-terminated string owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    if !(name.is_empty() || name.starts_with(b"/")) {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    if phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_DYNAMIC)
        // SAFETY: PT_DYNAMIC of a loaded object is mapped and readable.
        .any(|p| unsafe { has_text_relocations(info.dlpi_addr, p) })
    {
        return 0;
    }
    let relro: Vec<(usize, usize)> = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_GNU_RELRO)
        .map(|p| span(info.dlpi_addr, p))
        .collect();
    for p in phdrs {
        if p.p_type != libc::PT_LOAD || p.p_flags & libc::PF_W != 0 {
            continue;
        }
        let (s, e) = span(info.dlpi_addr, p);
        // Never part of a non-writable load segment with lld or GNU ld, but
        // a linker that put RELRO there would have relocated pages here.
        if relro.iter().any(|&(rs, re)| rs < e && s < re) {
            continue;
        }
        ranges.push((s, e));
    }
    0
}

/// Whether the object's dynamic section asks the loader to patch its code
/// (`DT_TEXTREL`, or `DF_TEXTREL` in `DT_FLAGS`).
///
/// # Safety
/// `p` is the `PT_DYNAMIC` header of an object loaded at `base`.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe fn has_text_relocations(base: u64, p: &libc::Elf64_Phdr) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }
    let (start, _) = span(base, p);
    let n = p.p_memsz as usize / std::mem::size_of::<Dyn>();
    // SAFETY: the caller's contract; the table ends at DT_NULL or p_memsz.
    let entries = unsafe { std::slice::from_raw_parts(start as *const Dyn, n) };
    entries
        .iter()
        .take_while(|d| d.tag != DT_NULL)
        .any(|d| d.tag == DT_TEXTREL || (d.tag == DT_FLAGS && d.val & DF_TEXTREL != 0))
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn span(base: u64, p: &libc::Elf64_Phdr) -> (usize, usize) {
    let s = base.wrapping_add(p.p_vaddr) as usize;
    (s, s + p.p_memsz as usize)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static WRITABLE: AtomicUsize = AtomicUsize::new(7);

    /// Code is in the dropped set; writable data never is.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn only_readonly_segments() {
        let segs = super::readonly_segments();
        let inside = |a: usize| segs.iter().any(|&(s, e)| s <= a && a < e);
        assert!(inside(super::readonly_segments as *const () as usize));
        assert!(!inside(&WRITABLE as *const _ as usize));
        WRITABLE.store(8, Ordering::Relaxed);
        super::drop_startup_code();
        assert_eq!(WRITABLE.load(Ordering::Relaxed), 8);
    }

    /// Dropped code comes back on use: the process keeps running and
    /// computing after its own text was unmapped.
    #[test]
    fn code_runs_after_drop() {
        let dropped = super::drop_startup_code();
        if cfg!(target_os = "linux") {
            assert!(dropped > 0);
        }
        let v: Vec<String> = (0..1000).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[255], "ff");
        assert!(serde_json::to_string(&v).unwrap().starts_with("[\"0\""));
    }
}
