//! The `rampart` binary: everything lives in the library; this only hands
//! the command line to it.

/// mimalloc returns freed memory to the system promptly; glibc's malloc
/// kept hundreds of MiB after a burst of logins (each Argon2 hash takes
/// 19 MiB, and its dynamic mmap threshold moves such blocks onto the heap).
/// Built with `no_thp`: mimalloc otherwise asks for transparent huge pages,
/// and each 2 MiB page it touches stays resident (idle RSS 39 → 25 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rampart::cli::main()
}
