// README.md's "Use" section, compiled and run as written (tools/readme_snippets.py extracts it at
// build time), so the documentation cannot drift from the library.

// First, before any other Asio header: it turns on Asio's co_await support for clang too.
#include "tidepool/asio.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>       // for boost::asio::co_spawn
#include <boost/asio/io_context.hpp>     // for boost::asio::io_context
#include <boost/asio/post.hpp>           // for boost::asio::post
#include <boost/asio/strand.hpp>         // for boost::asio::make_strand
#include <boost/asio/use_awaitable.hpp>  // for boost::asio::use_awaitable
#include <boost/asio/use_future.hpp>     // for boost::asio::use_future
#include <cstddef>                       // for std::size_t
#include <functional>                    // for std::plus
#include <future>                        // for std::future
#include <optional>                      // for std::optional
#include <stop_token>                    // for std::stop_token
#include <vector>                        // for std::vector

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
