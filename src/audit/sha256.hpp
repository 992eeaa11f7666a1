// Private to src/audit: a per-thread Botan SHA-256 instance shared by the hashing helpers.
#pragma once

#include <botan/hash.h>

namespace kakunin::audit_detail {

/// The calling thread's SHA-256 object (always left finalised, i.e. ready for new input).
Botan::HashFunction& thread_sha256();

}  // namespace kakunin::audit_detail
