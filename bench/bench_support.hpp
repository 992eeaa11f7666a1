// Shared by the benchmarks: a global allocation counter (operator new is replaced in
// bench_main.cpp) and the figure names of DESIGN §7.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>

namespace kakunin::bench {

/// Heap allocations made by this process so far (all threads).
std::uint64_t allocation_count() noexcept;

/// A file name of this run's own in the temporary directory.
inline std::string temp_path(const char* name) {
    return "/tmp/kakunin-bench-" + std::to_string(getpid()) + "-" + name;
}

}  // namespace kakunin::bench
