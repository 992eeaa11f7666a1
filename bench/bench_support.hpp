// Shared by the benchmarks: a global allocation counter (operator new is replaced in
// bench_main.cpp) and the figure names of DESIGN §7.
#pragma once

#include <cstdint>

namespace kakunin::bench {

/// Heap allocations made by this process so far (all threads).
std::uint64_t allocation_count() noexcept;

}  // namespace kakunin::bench
