#pragma once
// Cache-line geometry used to keep independently written atomics apart.

#include <cstddef>  // for std::size_t

namespace tidepool::detail {

// 64 bytes is the line size of every x86-64 and of most AArch64 cores. We do not use
// std::hardware_destructive_interference_size: g++ warns that its value may differ between
// translation units built with different -mtune, which is exactly what a header must not risk.
inline constexpr std::size_t cache_line_size = 64;

}  // namespace tidepool::detail
