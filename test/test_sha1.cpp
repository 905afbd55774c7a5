// The SHA-1 of perf/sha1.hpp (the UTS benchmark's random number generator) against the FIPS 180
// example vectors, fed whole and in pieces that straddle the 64-byte blocks.

#include "../perf/sha1.hpp"  // perf/ is not on the tests' include path

#include <gtest/gtest.h>

#include <cstddef>      // for std::size_t
#include <cstdint>      // for std::uint8_t
#include <cstdio>       // for std::snprintf
#include <span>         // for std::span
#include <string>       // for std::string
#include <string_view>  // for std::string_view

namespace {

using tidepool::perf::sha1;
using tidepool::perf::sha1_digest;

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string hex(const sha1_digest& digest) {
  std::string out;
  for (std::uint8_t byte : digest) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", byte);
    out += two;
  }
  return out;
}

std::string sha1_hex(std::string_view text) { return hex(sha1().update(bytes_of(text)).finish()); }

// The 448-bit message fills the first block past the 55 bytes that leave room for the length,
// so its padding takes a second block.
constexpr std::string_view two_block_message = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr std::string_view eight_hundred_ninety_six_bits =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

TEST(Sha1, FipsVectors) {
  EXPECT_EQ(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(two_block_message.size() * 8, 448U);
  EXPECT_EQ(sha1_hex(two_block_message), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(sha1_hex(eight_hundred_ninety_six_bits), "a49b2446a02c645bf419f995b67091253a04a259");
}

TEST(Sha1, OneMillionA) {
  const std::string million_a(1'000'000, 'a');
  EXPECT_EQ(sha1_hex(million_a), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST(Sha1, PiecewiseUpdatesGiveTheWholeMessagesDigest) {
  const std::string million_a(1'000'000, 'a');
  for (std::size_t piece : {1U, 3U, 55U, 63U, 64U, 65U, 1000U}) {
    sha1 h;
    for (std::size_t at = 0; at < million_a.size(); at += piece) {
      h.update(bytes_of(std::string_view(million_a).substr(at, piece)));
    }
    EXPECT_EQ(hex(h.finish()), "34aa973cd4c4daa4f61eeb2bdbad27316534016f") << "pieces of " << piece;
  }
  sha1 h;
  h.update(bytes_of(two_block_message.substr(0, 20))).update(bytes_of(two_block_message.substr(20)));
  EXPECT_EQ(hex(h.finish()), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

}  // namespace
