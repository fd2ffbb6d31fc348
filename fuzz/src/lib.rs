//! What every fuzz target shares: the menus that orders are priced
//! against, the split of one input into header lines and a body, and the
//! allocation limit.
//!
//! The allocation limit. libFuzzer's `-malloc_limit_mb` only works when a
//! sanitizer runtime reports every `malloc` to it (through
//! `__sanitizer_install_malloc_and_free_hooks`), and the stable toolchain
//! builds without sanitizers. So this crate plays that part itself: the
//! global allocator below reports every Rust allocation to the hooks
//! libFuzzer installs, and libFuzzer then stops on the first single
//! allocation above `-malloc_limit_mb` with its usual `out-of-memory
//! (malloc(N))` report and an `oom-…` artifact, exactly as under a
//! sanitizer. (The rejected alternative, a `panic!` in the allocator past a
//! fixed size, would unwind out of an allocator, which is not allowed, and
//! would ignore the limit the run was given.) `-rss_limit_mb` needs no help:
//! libFuzzer polls the process's peak RSS itself.
//!
//! This is the only `unsafe` in the fuzz crate (a `GlobalAlloc` cannot be
//! written without it); the main workspace forbids `unsafe`, and this crate
//! is not part of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::menu::{Menu, MenuSnapshot, demo_menu};

// ------------------------------------------------------------ allocations

type MallocHook = unsafe extern "C" fn(*const c_void, usize);
type FreeHook = unsafe extern "C" fn(*const c_void);

/// libFuzzer's hooks, as function addresses (0: none installed yet).
static MALLOC_HOOK: AtomicUsize = AtomicUsize::new(0);
static FREE_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Called by libFuzzer once at start-up, when the symbol exists, to be told
/// of every allocation. The sanitizer runtimes define it; here, this crate
/// does (see the top of the file). libFuzzer declares it weak, so the
/// definition must be linked into each target: `bounded_allocations!`
/// puts it there.
#[doc(hidden)]
pub fn install_hooks(malloc: Option<MallocHook>, free: Option<FreeHook>) -> i32 {
    MALLOC_HOOK.store(malloc.map_or(0, |f| f as usize), Ordering::Release);
    FREE_HOOK.store(free.map_or(0, |f| f as usize), Ordering::Release);
    1
}

/// Defines, in the fuzz target that invokes it, the symbol libFuzzer looks
/// for to hook allocations (a weak reference does not pull a definition out
/// of a library, so it must live in the binary itself). Every target
/// invokes it once, next to `fuzz_target!`.
#[macro_export]
macro_rules! bounded_allocations {
    () => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn __sanitizer_install_malloc_and_free_hooks(
            malloc: Option<unsafe extern "C" fn(*const ::std::ffi::c_void, usize)>,
            free: Option<unsafe extern "C" fn(*const ::std::ffi::c_void)>,
        ) -> i32 {
            $crate::install_hooks(malloc, free)
        }
    };
}

/// The system allocator, reporting to libFuzzer's hooks once installed.
struct Reporting;

fn report_malloc(ptr: *mut u8, size: usize) {
    let hook = MALLOC_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only ever set by `install_hooks` from a valid function
        // pointer of this type, which libFuzzer keeps for the process's life.
        let hook: MallocHook = unsafe { std::mem::transmute::<usize, MallocHook>(hook) };
        // SAFETY: libFuzzer's hook only counts, compares `size` with the
        // limit and (over it) reports and exits; it does not allocate
        // through this allocator.
        unsafe { hook(ptr as *const c_void, size) };
    }
}

fn report_free(ptr: *mut u8) {
    let hook = FREE_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: as in `report_malloc`.
        let hook: FreeHook = unsafe { std::mem::transmute::<usize, FreeHook>(hook) };
        // SAFETY: as in `report_malloc`.
        unsafe { hook(ptr as *const c_void) };
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the hooks only
// observe. A failed allocation (null) is reported too, so a request for
// more than the limit is an out-of-memory report rather than an abort.
unsafe impl GlobalAlloc for Reporting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        report_malloc(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        report_malloc(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        report_free(ptr);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            report_free(ptr);
        }
        report_malloc(p, new_size);
        p
    }
}

#[global_allocator]
static ALLOCATOR: Reporting = Reporting;

// ------------------------------------------------------------------ menus

/// The demo store's menu, as `rushhour` seeds it on first start: what the
/// seed corpus orders from.
pub fn demo() -> &'static MenuSnapshot {
    static MENU: OnceLock<MenuSnapshot> = OnceLock::new();
    MENU.get_or_init(|| MenuSnapshot::new(demo_menu()))
}

/// The demo menu as a broken upstream catalog could deliver it: prices at
/// and around the limits of `i64` and of `money::MAX_TOTAL`, negative
/// ones, and an item sold out. `order::price` promises to refuse rather
/// than wrap or panic "whatever a menu holds"; this menu holds the worst.
pub fn hostile() -> &'static MenuSnapshot {
    static MENU: OnceLock<MenuSnapshot> = OnceLock::new();
    MENU.get_or_init(|| {
        let mut menu: Menu = demo_menu();
        let extremes = [
            i64::MAX,
            i64::MIN,
            domain::money::MAX_TOTAL,
            domain::money::MAX_TOTAL / 20 + 1,
            -1,
            0,
        ];
        for (i, item) in menu.items.iter_mut().enumerate() {
            for (j, size) in item.sizes.iter_mut().enumerate() {
                size.price = extremes[(i + j) % extremes.len()];
            }
            for (j, m) in item.modifiers.iter_mut().enumerate() {
                m.price_delta = extremes[(i + j + 3) % extremes.len()];
            }
        }
        if let Some(latte) = menu.items.iter_mut().find(|i| i.sku == "latte") {
            latte.available = false;
        }
        MenuSnapshot::new(menu)
    })
}

/// The menu the worker would decide a record against: the demo menu for
/// the demo store, none (the store no longer exists) for any other.
pub fn menu_of(store: &domain::StoreId) -> Option<&'static MenuSnapshot> {
    (store == &demo().store().id).then(demo)
}

// ------------------------------------------------------------------ input

/// Splits `data` at its first `n` newlines: `n` header lines (without the
/// `\n`, possibly fewer if the input has fewer) and the rest, whole, as the
/// body. Inputs stay readable and easy to write by hand, which a
/// length-prefixed binary split (`arbitrary`) would not be.
pub fn lines_then_body(data: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut heads = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                heads.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => break,
        }
    }
    (heads, rest)
}
