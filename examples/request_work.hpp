#pragma once
// The CPU work behind one request of examples/server, shared with examples/load_client, which
// checks every reply against its own computation of it.
//
// `rounds` passes of 64-bit FNV-1a over the payload, each pass starting from the previous one's
// result put through the splitmix64 finaliser, so that the passes do not collapse into one long
// FNV run. Every payload byte costs a dependent xor and multiply, 3–4 cycles: 500 rounds of a
// 40-byte payload (the load client's defaults) take ~27 µs on a 2.4 GHz core.

#include <cstddef>      // for std::size_t
#include <cstdint>      // for std::uint32_t, std::uint64_t
#include <string>       // for std::string
#include <string_view>  // for std::string_view

namespace request_work {

inline constexpr std::uint32_t max_rounds = 1'000'000;
// At most this many byte-rounds per request (~16 ms), so that no single request holds a worker
// for long.
inline constexpr std::uint64_t max_work = std::uint64_t{1} << 24;

[[nodiscard]] inline std::uint64_t work(std::string_view payload, std::uint32_t rounds) {
  // Empty payloads still cost something per round.
  return std::uint64_t{rounds} * (payload.empty() ? 1 : payload.size());
}

[[nodiscard]] inline std::uint64_t hash(std::string_view payload, std::uint32_t rounds) noexcept {
  std::uint64_t h = 0xcbf29ce484222325u;
  for (std::uint32_t r = 0; r < rounds; ++r) {
    for (const char c : payload) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3u;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    h ^= h >> 31;
  }
  return h;
}

// What the server answers `HASH <rounds> <payload>` with, after "OK ": 16 lowercase hex digits.
[[nodiscard]] inline std::string answer(std::string_view payload, std::uint32_t rounds) {
  static constexpr char digits[] = "0123456789abcdef";
  std::uint64_t h = hash(payload, rounds);
  std::string hex(16, '0');
  for (std::size_t i = hex.size(); i-- > 0; h >>= 4) hex[i] = digits[h & 15];
  return hex;
}

}  // namespace request_work
