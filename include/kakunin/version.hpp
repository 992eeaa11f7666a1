// kakunin/version.hpp — the library's version, also written into audit exports.
#pragma once

#define KAKUNIN_VERSION_MAJOR 0
#define KAKUNIN_VERSION_MINOR 1
#define KAKUNIN_VERSION_PATCH 0

namespace kakunin {
inline constexpr const char* version_string = "0.1.0";
}
