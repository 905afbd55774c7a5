#pragma once
// SHA-1 (FIPS 180-4, sections 5.1.1, 5.3.1 and 6.1), written out so that the UTS benchmark's
// splittable random number generator needs no crypto library. Not for security: SHA-1 is broken
// for collisions; UTS only needs a fixed, well-mixed function of its input.
//
//   tidepool::perf::sha1 h;
//   h.update(bytes).update(more);
//   tidepool::perf::sha1_digest d = h.finish();   // 20 bytes, big-endian words H0..H4
//
// Tested against the FIPS 180 example vectors in test/test_sha1.cpp.

#include <array>    // for std::array
#include <bit>      // for std::rotl
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint8_t, std::uint32_t, std::uint64_t
#include <cstring>  // for std::memcpy, std::memset
#include <span>     // for std::span

namespace tidepool::perf {

using sha1_digest = std::array<std::uint8_t, 20>;

class sha1 {
 public:
  sha1& update(std::span<const std::uint8_t> bytes) noexcept {
    message_bytes_ += bytes.size();
    while (!bytes.empty()) {
      if (buffered_ == 0 && bytes.size() >= block_bytes) {  // whole blocks skip the copy
        compress(bytes.data());
        bytes = bytes.subspan(block_bytes);
        continue;
      }
      const std::size_t taken = bytes.size() < block_bytes - buffered_ ? bytes.size() : block_bytes - buffered_;
      std::memcpy(block_.data() + buffered_, bytes.data(), taken);
      buffered_ += taken;
      bytes = bytes.subspan(taken);
      if (buffered_ == block_bytes) {
        compress(block_.data());
        buffered_ = 0;
      }
    }
    return *this;
  }

  // Pads (5.1.1: a 1 bit, zeros, the message length in bits as 64 bits big-endian) and returns
  // the digest. The object is spent afterwards.
  [[nodiscard]] sha1_digest finish() noexcept {
    const std::uint64_t message_bits = message_bytes_ * 8;
    block_[buffered_++] = 0x80;
    if (buffered_ > block_bytes - 8) {  // no room left for the length: it goes in one more block
      std::memset(block_.data() + buffered_, 0, block_bytes - buffered_);
      compress(block_.data());
      buffered_ = 0;
    }
    std::memset(block_.data() + buffered_, 0, block_bytes - 8 - buffered_);
    for (std::size_t i = 0; i < 8; ++i) {
      block_[block_bytes - 1 - i] = static_cast<std::uint8_t>(message_bits >> (8 * i));
    }
    compress(block_.data());

    sha1_digest digest;
    for (std::size_t word = 0; word < 5; ++word) {
      for (std::size_t byte = 0; byte < 4; ++byte) {
        digest[4 * word + byte] = static_cast<std::uint8_t>(hash_[word] >> (24 - 8 * byte));
      }
    }
    return digest;
  }

 private:
  static constexpr std::size_t block_bytes = 64;

  // One 512-bit block (6.1.2 steps 1 to 4). Only the first 16 schedule words are made here; see
  // twenty_rounds for the rest.
  void compress(const std::uint8_t* block) noexcept {
    std::array<std::uint32_t, 80> w;
    for (std::size_t t = 0; t < 16; ++t) {
      w[t] = std::uint32_t{block[4 * t]} << 24 | std::uint32_t{block[4 * t + 1]} << 16 |
             std::uint32_t{block[4 * t + 2]} << 8 | std::uint32_t{block[4 * t + 3]};
    }

    std::uint32_t a = hash_[0];
    std::uint32_t b = hash_[1];
    std::uint32_t c = hash_[2];
    std::uint32_t d = hash_[3];
    std::uint32_t e = hash_[4];
    // The four functions of 4.1.1 (Ch, Parity, Maj, Parity) and constants of 4.2.1, 20 rounds each.
    auto ch = [](std::uint32_t x, std::uint32_t y, std::uint32_t z) { return (x & y) ^ (~x & z); };
    auto parity = [](std::uint32_t x, std::uint32_t y, std::uint32_t z) { return x ^ y ^ z; };
    auto maj = [](std::uint32_t x, std::uint32_t y, std::uint32_t z) { return (x & y) ^ (x & z) ^ (y & z); };
    twenty_rounds(a, b, c, d, e, w, 0, ch, 0x5a827999);
    twenty_rounds(a, b, c, d, e, w, 20, parity, 0x6ed9eba1);
    twenty_rounds(a, b, c, d, e, w, 40, maj, 0x8f1bbcdc);
    twenty_rounds(a, b, c, d, e, w, 60, parity, 0xca62c1d6);
    hash_[0] += a;
    hash_[1] += b;
    hash_[2] += c;
    hash_[3] += d;
    hash_[4] += e;
  }

  // Rounds first .. first + 19, which share their function and constant. One round is
  //   T = ROTL5(a) + f(b, c, d) + e + K + W[t];  e = d;  d = c;  c = ROTL30(b);  b = a;  a = T
  // which, written in place, is e += ROTL5(a) + f(b, c, d) + K + W[t]; b = ROTL30(b), after which
  // the names move one step (e is the new a): after five rounds they are back where they began.
  // The schedule words beyond the 16th are made as the rounds need them: computed in a loop of
  // their own, g++ vectorizes them two by two and stalls on its own stores. Inlined by force
  // because clang, left to itself, keeps a..e in memory across a call.
  template <class F>
  [[gnu::always_inline]] static void twenty_rounds(std::uint32_t& a, std::uint32_t& b, std::uint32_t& c,
                                                   std::uint32_t& d, std::uint32_t& e, std::array<std::uint32_t, 80>& w,
                                                   std::size_t first, F f, std::uint32_t k) noexcept {
    auto word = [&w](std::size_t t) {
      if (t >= 16) w[t] = std::rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
      return w[t];
    };
    auto round = [&](std::uint32_t& v, std::uint32_t& x, std::uint32_t& y, std::uint32_t& z, std::uint32_t& out,
                     std::size_t t) {
      out += std::rotl(v, 5) + f(x, y, z) + k + word(t);
      x = std::rotl(x, 30);
    };
    for (std::size_t t = first; t < first + 20; t += 5) {
      round(a, b, c, d, e, t);
      round(e, a, b, c, d, t + 1);
      round(d, e, a, b, c, t + 2);
      round(c, d, e, a, b, t + 3);
      round(b, c, d, e, a, t + 4);
    }
  }

  std::array<std::uint32_t, 5> hash_ = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};  // 5.3.1
  std::array<std::uint8_t, block_bytes> block_{};
  std::size_t buffered_ = 0;  // bytes of block_ filled by update()
  std::uint64_t message_bytes_ = 0;
};

}  // namespace tidepool::perf
