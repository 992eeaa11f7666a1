// guard_holder.hpp — the Python object's hold on a Guard: destroys it with the GIL released,
// since ~Guard joins threads that may be waiting for the GIL in a Python callback.
#pragma once

#include <memory>

#include "kakunin/guard.hpp"

namespace kakunin::python {

class GuardHolder {
public:
    explicit GuardHolder(std::unique_ptr<Guard> guard) : m_guard(std::move(guard)) {}
    ~GuardHolder();
    GuardHolder(const GuardHolder&) = delete;
    GuardHolder& operator=(const GuardHolder&) = delete;
    Guard& guard() const noexcept { return *m_guard; }

private:
    std::unique_ptr<Guard> m_guard;
};

}  // namespace kakunin::python
