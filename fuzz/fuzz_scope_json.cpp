// Any text as scope JSON: an error, or a scope whose canonical form parses back to itself.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kakunin/scope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const kakunin::Scope s =
            kakunin::parse_scope_json(std::string_view(reinterpret_cast<const char*>(data), size));
        const std::string canonical = kakunin::to_json(s);
        if (kakunin::to_json(kakunin::parse_scope_json(canonical)) != canonical) std::abort();
    } catch (const kakunin::Error&) {
    }
    return 0;
}
