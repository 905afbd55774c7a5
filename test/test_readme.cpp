// README.md's "Use" section, compiled and run as written (tools/readme_snippets.py extracts it at
// build time), so the documentation cannot drift from the library.

#include <gtest/gtest.h>

#include <cstddef>     // for std::size_t
#include <functional>  // for std::plus
#include <stop_token>  // for std::stop_token
#include <vector>      // for std::vector

#include "tidepool/tidepool.hpp"

namespace {

long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

TEST(Readme, UseSectionSnippetsCompileAndRun) {
  // What the snippets refer to without defining it.
  int a = 3;
  int b = 4;
  const int n = 20;
  std::vector<int> in(n, 2);
  std::vector<int> out(n, 0);
  std::vector<long> v(n, 1);
  auto fetch = [](int x) { return static_cast<std::size_t>(x) * 10; };
  auto crawl = [](int, std::stop_token) {};
  auto f = [](int x) { return x * x; };

#include "readme_snippets.inc"

  EXPECT_EQ(a, static_cast<int>(fib(n - 1)));
  EXPECT_EQ(b, static_cast<int>(fib(n - 2)));
  for (int x : out) EXPECT_EQ(x, 4);
}

}  // namespace
