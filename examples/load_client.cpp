// The load test of examples/server (issue #6). Starts the server (port 0), drives it over several
// pipelined connections, checks every reply against its own computation of the work, prints the
// throughput and latency, checks /metrics, and stops the server with SIGTERM.
//
//   examples/load_client SERVER [--requests=N] [--connections=C] [--window=W] [--rounds=R]
//                        [--workers=N] [--queue=N] [--deadline=SECONDS] [--seed=N]
//   examples/load_client --connect=127.0.0.1:PORT [--metrics=127.0.0.1:PORT] [same options]
//
// Defaults: 20000 requests over 8 connections, at most 16 unanswered per connection, 500 rounds
// (~25 µs of work each), 60 s deadline. --workers, --queue, --max-connections (default 256) and
// --idle-timeout (default 2 s) are passed on to the server it starts. With --connect it drives a
// server that is already running (and scrapes /metrics only if --metrics is given); it does not
// stop that server, and runs the idle check only if given that server's --idle-timeout.
//
// Two checks of the server's hardening, after the load:
//   idle   --idle-connections (default 300) connections that send nothing hold every slot: a new
//          client is refused while they do; the server closes each of them within its idle
//          timeout (+ 10 s of slack), and then a new client is served. 0 skips it.
//   reset  a connection queues 16 requests of the most work allowed (~16 ms each), reads the
//          first reply and resets (RST): /metrics must count the others cancelled, not run
//          ahead of live clients, but for up to 6 per server worker that may have started
//          (at least one). Needs /metrics.
//
// Each request carries its own random payload (16–64 bytes). Latency runs from the request's
// first send to its OK reply, so it includes the wait behind the other requests in the window.
// A BUSY reply (the server's pool was full) is counted, and the request is sent again after its
// connection pauses for 1 ms: BUSY costs latency, never correctness. Any other reply that is not
// the expected one fails the test.
//
// Exits 0 only if every request got its right answer, the protocol checks passed, /metrics counted
// at least as many succeeded tasks as OK replies and at least as many dropped ones as BUSY
// replies, and the server exited with status 0 after SIGTERM, all before the deadline (after
// which the server is killed).

#include <tidepool/tidepool.hpp>

#include <boost/asio/io_context.hpp>    // for boost::asio::io_context
#include <boost/asio/ip/tcp.hpp>        // for boost::asio::ip::tcp
#include <boost/asio/read_until.hpp>    // for boost::asio::read_until
#include <boost/asio/steady_timer.hpp>  // for boost::asio::steady_timer
#include <boost/asio/write.hpp>         // for boost::asio::async_write, boost::asio::write

#include <fcntl.h>     // for O_CLOEXEC, O_RDONLY
#include <poll.h>      // for poll
#include <signal.h>    // for kill, SIGTERM, SIGKILL
#include <spawn.h>     // for posix_spawn
#include <sys/wait.h>  // for waitpid
#include <unistd.h>    // for pipe2, read, close

#include <algorithm>     // for std::sort, std::max
#include <array>         // for std::array
#include <cctype>        // for std::tolower
#include <cerrno>        // for errno
#include <charconv>      // for std::from_chars
#include <chrono>        // for std::chrono
#include <cinttypes>     // for PRIu64
#include <cmath>         // for std::ceil
#include <cstdint>       // for std::uint32_t, std::uint64_t
#include <cstdio>        // for std::printf, std::fprintf, std::sscanf
#include <cstring>       // for std::strerror
#include <deque>         // for std::deque
#include <functional>    // for std::function
#include <memory>        // for std::unique_ptr
#include <optional>      // for std::optional
#include <random>        // for std::mt19937_64
#include <string>        // for std::string
#include <string_view>   // for std::string_view
#include <system_error>  // for std::errc
#include <thread>        // for std::this_thread::sleep_for, std::thread::hardware_concurrency
#include <vector>        // for std::vector

#include "request_work.hpp"

extern char** environ;  // for posix_spawn: the server inherits ASAN_OPTIONS and the like

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using error_code = boost::system::error_code;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string server;
  std::string connect;  // ADDRESS:PORT of a running server; empty: start one
  std::string metrics;  // ADDRESS:PORT of its /metrics, with --connect
  std::size_t requests = 20000;
  std::size_t connections = 8;
  std::size_t window = 16;
  std::uint32_t rounds = 500;
  std::string workers;  // passed on to the server as they are
  std::string queue;
  std::size_t max_connections = 256;
  std::optional<unsigned> idle_timeout;  // the server's; default 2 s for a server this client starts
  std::size_t idle_connections = 300;
  unsigned deadline = 60;
  std::uint64_t seed = 1;
};

bool failed = false;

void fail(const std::string& what) {
  std::fprintf(stderr, "load_client: FAIL: %s\n", what.c_str());
  failed = true;
}

template <class T>
bool parse_number(std::string_view text, T& value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end && !text.empty();
}

std::optional<tcp::endpoint> parse_endpoint(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  unsigned short port = 0;
  if (colon == std::string_view::npos || !parse_number(text.substr(colon + 1), port)) return std::nullopt;
  error_code ec;
  const auto address = asio::ip::make_address(std::string(text.substr(0, colon)), ec);
  if (ec) return std::nullopt;
  return tcp::endpoint(address, port);
}

double micros(clock_type::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The spawned server. Killed and reaped on destruction unless it was reaped already, so that no
// failure path leaves it running.
class server_process {
 public:
  server_process() = default;
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;
  ~server_process() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }

  bool spawn(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      fail(std::string("pipe2: ") + std::strerror(errno));
      return false;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    std::vector<std::string> copies = args;
    std::vector<char*> argv;
    for (std::string& a : copies) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    stdout_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      fail("cannot start " + args[0] + ": " + std::strerror(rc));
      return false;
    }
    return true;
  }

  // The server's first line of output, or nothing if it did not come before the deadline.
  std::optional<std::string> read_line(clock_type::time_point deadline) {
    std::string line;
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now()).count();
      if (left <= 0) {
        fail("the server printed no ports line before the deadline");
        return std::nullopt;
      }
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000))) <= 0) continue;
      char buffer[256];
      const ssize_t n = ::read(stdout_, buffer, sizeof buffer);
      if (n <= 0) {
        fail("the server closed its stdout without printing its ports");
        return std::nullopt;
      }
      line.append(buffer, static_cast<std::size_t>(n));
    }
    return line.substr(0, line.find('\n'));
  }

  bool running() {
    if (reaped_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;
    reaped_ = true;
    status_ = status;
    return false;
  }

  // Sends SIGTERM and waits for a clean exit (status 0).
  bool terminate(clock_type::time_point deadline) {
    if (!running()) {
      fail("the server exited before it was told to (" + describe() + ")");
      return false;
    }
    ::kill(pid_, SIGTERM);
    while (running()) {
      if (clock_type::now() >= deadline) {
        fail("the server did not exit after SIGTERM before the deadline; killing it");
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!WIFEXITED(status_) || WEXITSTATUS(status_) != 0) {
      fail("the server " + describe() + " after SIGTERM");
      return false;
    }
    return true;
  }

 private:
  std::string describe() const {
    if (WIFEXITED(status_)) return "exited with status " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) return "was killed by signal " + std::to_string(WTERMSIG(status_));
    return "ended";
  }

  pid_t pid_ = -1;
  int stdout_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// Connects, sends `request`, half-closes, and returns everything received until the server
// closes the connection; nothing if that fails or does not happen before the deadline.
std::optional<std::string> exchange(asio::io_context& io, const tcp::endpoint& to, const std::string& request,
                                    clock_type::time_point deadline, const char* what) {
  tcp::socket socket(io);
  std::string received;
  std::array<char, 4096> chunk;
  error_code failure;
  bool done = false;
  std::function<void()> read_more = [&] {
    socket.async_read_some(asio::buffer(chunk), [&](error_code ec, std::size_t n) {
      if (ec) {
        if (ec != asio::error::eof) failure = ec;
        done = true;
        return;
      }
      received.append(chunk.data(), n);
      if (received.size() > (std::size_t{1} << 20)) {
        failure = asio::error::message_size;
        done = true;
        return;
      }
      read_more();
    });
  };
  socket.async_connect(to, [&](error_code ec) {
    if (ec) {
      failure = ec;
      done = true;
      return;
    }
    asio::async_write(socket, asio::buffer(request), [&](error_code write_ec, std::size_t) {
      error_code ignored;
      if (write_ec) {
        failure = write_ec;
        socket.close(ignored);
      } else {
        socket.shutdown(tcp::socket::shutdown_send, ignored);
      }
    });
    read_more();
  });
  io.restart();
  io.run_until(deadline);
  if (!done) {
    // Let the cancelled operations finish while what they refer to still exists.
    error_code ignored;
    socket.close(ignored);
    io.restart();
    io.run();
    fail(std::string(what) + ": no answer before the deadline");
    return std::nullopt;
  }
  if (failure) {
    fail(std::string(what) + ": " + failure.message());
    return std::nullopt;
  }
  return received;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  for (std::size_t end; (end = text.find('\n')) != std::string_view::npos; text.remove_prefix(end + 1)) {
    lines.emplace_back(text.substr(0, end));
  }
  if (!text.empty()) lines.emplace_back(text);  // an unterminated last line
  return lines;
}

// Malformed requests get ERR without losing the connection; a line that is too long gets
// `ERR line too long` and the server closes the connection. Returns the OK replies seen.
std::uint64_t check_protocol(asio::io_context& io, const tcp::endpoint& to, clock_type::time_point deadline) {
  const std::string ok = "OK " + request_work::answer("a b", 3);
  std::uint64_t oks = 0;
  if (auto reply = exchange(io, to, "HASH 3 a b\r\nHASH x abc\nPING\nHASH 0 abc\n\nHASH 3 a b\n", deadline,
                            "malformed requests")) {
    const std::vector<std::string> lines = split_lines(*reply);
    bool right = lines.size() == 6;
    for (std::size_t i = 0; right && i < lines.size(); ++i) {
      const bool expect_ok = i == 0 || i == 5;
      // BUSY is a fair answer from a server that others are loading (--connect).
      right = expect_ok ? lines[i] == ok || lines[i] == "BUSY" : lines[i].starts_with("ERR ");
      oks += lines[i] == ok;
    }
    if (!right) fail("malformed requests: unexpected replies:\n" + *reply);
  }
  const std::string too_long = "HASH 1 " + std::string(70 * 1024, 'x') + "\nHASH 1 abc\n";
  if (auto reply = exchange(io, to, too_long, deadline, "a line too long")) {
    if (*reply != "ERR line too long\n") {
      fail("a line too long: expected 'ERR line too long' then close, got:\n" + *reply);
    }
  }
  return oks;
}

struct request {
  std::string payload;
  std::string expected;  // the whole OK reply line, without '\n'
};

class load_test {
 public:
  load_test(asio::io_context& io, const tcp::endpoint& to, const std::vector<request>& requests, const options& o)
      : io_(io), to_(to), requests_(requests), options_(o), rounds_(std::to_string(o.rounds)),
        first_sent_(requests.size()) {
    latencies_.reserve(requests.size());
    for (std::size_t i = 0; i < o.connections; ++i) connections_.push_back(std::make_unique<connection>(io));
  }

  // True if every request got its right answer before the deadline.
  bool run(clock_type::time_point deadline) {
    start_ = clock_type::now();
    if (requests_.empty()) {
      finish();
      return true;
    }
    for (auto& c : connections_) {
      c->socket.async_connect(to_, [this, &c = *c](error_code ec) {
        if (over_) return;
        if (ec) {
          stop("connect: " + ec.message());
          return;
        }
        error_code ignored;
        c.socket.set_option(tcp::no_delay(true), ignored);
        fill(c);
        read(c);
      });
    }
    io_.restart();
    io_.run_until(deadline);
    if (!over_) {
      stop("deadline reached with " + std::to_string(latencies_.size()) + " of " + std::to_string(requests_.size()) +
           " requests answered");
    }
    // Let the cancelled operations finish while what they refer to still exists.
    io_.restart();
    io_.run();
    return succeeded_;
  }

  double seconds() const { return std::chrono::duration<double>(end_ - start_).count(); }
  std::vector<clock_type::duration>& latencies() { return latencies_; }
  std::uint64_t busy() const { return busy_; }

 private:
  struct connection {
    explicit connection(asio::io_context& io) : socket(io), backoff(io) {}
    tcp::socket socket;
    asio::steady_timer backoff;
    bool backing_off = false;
    std::deque<std::uint32_t> in_flight;  // sent, unanswered, in the order sent
    std::deque<std::uint32_t> retry;      // answered BUSY, to send again
    std::string queued;                   // requests waiting for the write in progress
    std::string writing;
    std::string input;
    std::array<char, 64 * 1024> chunk;
  };

  // Sends requests until the connection has `window` unanswered ones.
  void fill(connection& c) {
    if (c.backing_off) return;
    const clock_type::time_point now = clock_type::now();
    while (c.in_flight.size() < options_.window) {
      std::uint32_t i = 0;
      if (!c.retry.empty()) {
        i = c.retry.front();
        c.retry.pop_front();
      } else if (next_ < requests_.size()) {
        i = static_cast<std::uint32_t>(next_++);
        first_sent_[i] = now;
      } else {
        break;
      }
      c.queued += "HASH ";
      c.queued += rounds_;
      c.queued += ' ';
      c.queued += requests_[i].payload;
      c.queued += '\n';
      c.in_flight.push_back(i);
    }
    write(c);
  }

  void write(connection& c) {
    if (!c.writing.empty() || c.queued.empty()) return;
    std::swap(c.writing, c.queued);
    asio::async_write(c.socket, asio::buffer(c.writing), [this, &c](error_code ec, std::size_t) {
      if (over_) return;
      if (ec) {
        stop("write: " + ec.message());
        return;
      }
      c.writing.clear();
      write(c);
    });
  }

  void read(connection& c) {
    c.socket.async_read_some(asio::buffer(c.chunk), [this, &c](error_code ec, std::size_t n) {
      if (over_) return;
      if (ec) {
        stop("read: " + ec.message() + " with " + std::to_string(c.in_flight.size()) + " requests unanswered");
        return;
      }
      c.input.append(c.chunk.data(), n);
      std::size_t parsed = 0;
      for (std::size_t end; !over_ && (end = c.input.find('\n', parsed)) != std::string::npos; parsed = end + 1) {
        on_reply(c, std::string_view(c.input).substr(parsed, end - parsed));
      }
      if (over_) return;
      c.input.erase(0, parsed);
      fill(c);
      read(c);
    });
  }

  void on_reply(connection& c, std::string_view line) {
    if (c.in_flight.empty()) {
      stop("a reply to no request: " + std::string(line));
      return;
    }
    const std::uint32_t i = c.in_flight.front();
    c.in_flight.pop_front();
    if (line == "BUSY") {
      ++busy_;
      c.retry.push_back(i);
      if (!c.backing_off) {
        // Sending more at once would most likely be refused too: give the pool a moment.
        c.backing_off = true;
        c.backoff.expires_after(std::chrono::milliseconds(1));
        c.backoff.async_wait([this, &c](error_code ec) {
          c.backing_off = false;
          if (!ec && !over_) fill(c);
        });
      }
      return;
    }
    if (line != requests_[i].expected) {
      stop("request " + std::to_string(i) + " (HASH " + rounds_ + " " + requests_[i].payload + "): expected '" +
           requests_[i].expected + "', got '" + std::string(line.substr(0, 200)) + "'");
      return;
    }
    latencies_.push_back(clock_type::now() - first_sent_[i]);
    if (latencies_.size() == requests_.size()) finish();
  }

  void finish() {
    end_ = clock_type::now();
    succeeded_ = true;
    close_all();
  }

  void stop(const std::string& why) {
    fail(why);
    close_all();
  }

  void close_all() {
    over_ = true;
    for (auto& c : connections_) {
      error_code ignored;
      c->socket.close(ignored);
      c->backoff.cancel();
    }
  }

  asio::io_context& io_;
  const tcp::endpoint to_;
  const std::vector<request>& requests_;
  const options& options_;
  const std::string rounds_;
  std::vector<std::unique_ptr<connection>> connections_;
  std::vector<clock_type::time_point> first_sent_;
  std::vector<clock_type::duration> latencies_;
  std::size_t next_ = 0;
  std::uint64_t busy_ = 0;
  bool over_ = false;
  bool succeeded_ = false;
  clock_type::time_point start_;
  clock_type::time_point end_;
};

std::vector<request> make_requests(const options& o) {
  static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -";
  std::mt19937_64 random(o.seed);
  std::vector<request> requests(o.requests);
  for (request& r : requests) {
    r.payload.resize(16 + random() % 49);
    for (char& ch : r.payload) ch = alphabet[random() % alphabet.size()];
  }
  // The answers are worked out up front, so that checking a reply costs the load loop nothing.
  tidepool::pool pool;
  tidepool::parallel_for(pool, std::size_t{0}, requests.size(), [&](std::size_t i) {
    requests[i].expected = "OK " + request_work::answer(requests[i].payload, o.rounds);
  });
  return requests;
}

struct scrape {
  std::uint64_t succeeded = 0;
  std::uint64_t dropped = 0;
  std::uint64_t cancelled = 0;
};

// GET /metrics, checked for the Prometheus content type and the task counters.
std::optional<scrape> scrape_metrics(asio::io_context& io, const tcp::endpoint& to, clock_type::time_point deadline) {
  const auto response = exchange(io, to, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                                 deadline, "GET /metrics");
  if (!response) return std::nullopt;
  const std::size_t head_end = response->find("\r\n\r\n");
  if (!response->starts_with("HTTP/1.1 200 ") || head_end == std::string::npos) {
    fail("GET /metrics: not a 200 response:\n" + response->substr(0, 500));
    return std::nullopt;
  }
  std::string head = response->substr(0, head_end) + "\r\n";
  for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (head.find("\r\ncontent-type: text/plain; version=0.0.4\r\n") == std::string::npos) {
    fail("GET /metrics: no 'Content-Type: text/plain; version=0.0.4' header:\n" + response->substr(0, head_end));
    return std::nullopt;
  }
  const std::string body = response->substr(head_end + 4);
  const auto value_of = [&](const std::string& name) -> std::optional<std::uint64_t> {
    for (const std::string& line : split_lines(body)) {
      std::uint64_t value = 0;
      if (line.starts_with(name + ' ') && parse_number(std::string_view(line).substr(name.size() + 1), value)) {
        return value;
      }
    }
    return std::nullopt;
  };
  const auto succeeded = value_of("tidepool_tasks_succeeded_total");
  const auto dropped = value_of("tidepool_tasks_dropped_total");
  const auto cancelled = value_of("tidepool_tasks_cancelled_total");
  if (!succeeded || !dropped || !cancelled) {
    fail("GET /metrics: no tidepool_tasks_succeeded_total, tidepool_tasks_dropped_total or "
         "tidepool_tasks_cancelled_total:\n" + body);
    return std::nullopt;
  }
  return scrape{*succeeded, *dropped, *cancelled};
}

// Checks that /metrics counts at least what this client saw. A task counts as succeeded once it
// returns, just after it posted its reply: a scrape right after the last reply may miss the last
// few, so it is retried for up to a second.
void check_metrics(asio::io_context& io, const tcp::endpoint& to, std::uint64_t oks, std::uint64_t busy,
                   clock_type::time_point deadline) {
  const clock_type::time_point give_up = std::min(deadline, clock_type::now() + std::chrono::seconds(1));
  for (;;) {
    const std::optional<scrape> m = scrape_metrics(io, to, deadline);
    if (!m) return;
    const bool enough = m->succeeded >= oks && m->dropped >= busy;
    if (enough || clock_type::now() >= give_up) {
      std::printf("metrics: tidepool_tasks_succeeded_total %" PRIu64 " (OK replies: %" PRIu64
                  "), tidepool_tasks_dropped_total %" PRIu64 " (BUSY replies: %" PRIu64 ")\n",
                  m->succeeded, oks, m->dropped, busy);
      if (m->succeeded < oks) fail("/metrics counts fewer succeeded tasks than OK replies");
      if (m->dropped < busy) fail("/metrics counts fewer dropped tasks than BUSY replies");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// One request on a new connection (its own I/O context): the reply line, or nothing if the
// server closed the connection without one (it refused the connection). A failure to connect,
// or no answer before the deadline, fails the run (and returns nothing too).
std::optional<std::string> probe(const tcp::endpoint& to, clock_type::time_point deadline, const char* what) {
  asio::io_context io;
  tcp::socket socket(io);
  const std::string request = "HASH 3 a b\n";
  std::string received;
  std::array<char, 256> chunk;
  bool done = false;
  std::function<void()> read_more = [&] {
    socket.async_read_some(asio::buffer(chunk), [&](error_code ec, std::size_t n) {
      if (!ec) received.append(chunk.data(), n);
      // Closed (EOF, or reset if our request was still unread), or a whole line.
      done = ec || received.find('\n') != std::string::npos;
      if (!done) read_more();
    });
  };
  socket.async_connect(to, [&](error_code ec) {
    if (ec) {
      fail(std::string(what) + ": connect: " + ec.message());
      done = true;
      return;
    }
    // A write into a connection the server closed fails; the read reports the close.
    asio::async_write(socket, asio::buffer(request), [](error_code, std::size_t) {});
    read_more();
  });
  io.run_until(deadline);
  if (!done) {
    fail(std::string(what) + ": no answer before the deadline");
    return std::nullopt;
  }
  const std::size_t end = received.find('\n');
  if (end == std::string::npos) return std::nullopt;
  return received.substr(0, end);
}

// Idle connections must not lock new clients out: `count` connections that send nothing, then a
// new client (refused while they hold every slot), then each must be closed by the server within
// its idle timeout (+ 10 s), and a new client served.
void check_idle(const tcp::endpoint& to, std::size_t count, std::size_t max_connections, unsigned idle_timeout,
                clock_type::time_point deadline) {
  struct idle_connection {
    explicit idle_connection(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::array<char, 256> chunk;
    clock_type::time_point closed_at;
  };
  asio::io_context io;
  std::vector<std::unique_ptr<idle_connection>> idle;
  const clock_type::time_point opened = clock_type::now();
  std::size_t open = 0;
  for (std::size_t i = 0; i < count; ++i) {
    idle.push_back(std::make_unique<idle_connection>(io));
    idle_connection& c = *idle.back();
    error_code ec;
    c.socket.connect(to, ec);
    if (ec) {
      fail("idle check: connect: " + ec.message());
      return;
    }
    ++open;
    c.socket.async_read_some(asio::buffer(c.chunk), [&open, &c](error_code read_ec, std::size_t) {
      if (!read_ec) fail("idle check: the server sent something to a connection that sent nothing");
      c.closed_at = clock_type::now();
      --open;
    });
  }
  if (count >= max_connections && probe(to, deadline, "idle check (slots held)")) {
    fail("idle check: a new client was served while " + std::to_string(count) + " idle connections held the " +
         std::to_string(max_connections) + " slots (is --max-connections the server's?)");
  }
  io.run_until(std::min(deadline, opened + std::chrono::seconds(idle_timeout + 10)));
  if (open > 0) {
    fail("idle check: " + std::to_string(open) + " of " + std::to_string(count) +
         " idle connections still open after the idle timeout");
    return;
  }
  // Those refused at once went in well under the timeout; the others waited for it.
  std::size_t closed_idle = 0;
  for (const auto& c : idle) closed_idle += c->closed_at - opened >= std::chrono::milliseconds(idle_timeout * 500);
  const std::optional<std::string> reply = probe(to, deadline, "idle check (slots freed)");
  const std::string ok = "OK " + request_work::answer("a b", 3);
  if (failed) return;
  if (!reply || (*reply != ok && *reply != "BUSY")) {
    fail("idle check: once the idle connections were closed, a new client was not served");
    return;
  }
  if (closed_idle == 0) fail("idle check: no connection was served and then closed for being idle");
  std::printf("idle: %zu connections sending nothing: %zu refused at once, %zu closed after the %u s idle timeout, "
              "within %.1f s; a new client was refused meanwhile and served afterwards\n",
              count, count - closed_idle, closed_idle, idle_timeout,
              std::chrono::duration<double>(clock_type::now() - opened).count());
}

// The work a reset connection queued must be cancelled, not run ahead of live clients: 16
// requests of the most work allowed (~16 ms each), then, once the first reply is in, a reset.
// Besides the first, the server's W workers may have started a few before its I/O thread (which
// competes with them for the cores) sees the reset, up to 6 each are allowed for: at least
// 15 - 6 W must be cancelled (3 on 2 workers; 10-12 were, here), and always at least one.
// `workers`: the server's, or 0 if unknown.
void check_reset(asio::io_context& io, const tcp::endpoint& to, const tcp::endpoint& metrics, std::size_t workers,
                 clock_type::time_point deadline) {
  const std::optional<scrape> before = scrape_metrics(io, metrics, deadline);
  if (!before) return;
  constexpr std::size_t queued = 16;
  const std::string payload(64, 'r');
  const auto rounds = static_cast<std::uint32_t>(request_work::max_work / payload.size());
  std::string requests;
  for (std::size_t i = 0; i < queued; ++i) requests += "HASH " + std::to_string(rounds) + " " + payload + "\n";
  tcp::socket socket(io);
  error_code ec;
  socket.connect(to, ec);
  if (!ec) asio::write(socket, asio::buffer(requests), ec);
  std::string first;
  if (!ec) asio::read_until(socket, asio::dynamic_buffer(first), '\n', ec);
  if (ec) {
    fail("reset check: " + ec.message());
    return;
  }
  first.resize(first.find('\n'));
  if (first != "OK " + request_work::answer(payload, rounds) && first != "BUSY") {
    fail("reset check: unexpected first reply '" + first + "'");
    return;
  }
  socket.set_option(asio::socket_base::linger(true, 0), ec);  // close() now sends RST
  socket.close(ec);
  const std::uint64_t required = workers == 0 || 6 * workers >= queued - 1 ? 1 : queued - 1 - 6 * workers;
  const clock_type::time_point reset_at = clock_type::now();
  const clock_type::time_point give_up = std::min(deadline, reset_at + std::chrono::seconds(5));
  for (;;) {
    const std::optional<scrape> after = scrape_metrics(io, metrics, deadline);
    if (!after) return;
    const std::uint64_t cancelled = after->cancelled - before->cancelled;
    if (cancelled >= required || clock_type::now() >= give_up) {
      std::printf("reset: a connection reset with %zu requests queued: %" PRIu64
                  " of them cancelled (tidepool_tasks_cancelled_total; at least %" PRIu64 " required), the rest ran\n",
                  queued - 1, cancelled, required);
      if (cancelled < required) {
        fail("reset check: the work of a reset connection still ran (cancelled " + std::to_string(cancelled) + " of " +
             std::to_string(queued - 1) + ")");
      }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool parse_args(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : arg.substr(eq + 1);
    bool ok = true;
    if (!arg.starts_with("--")) {
      ok = o.server.empty();
      o.server = arg;
    } else if (name == "--connect") {
      o.connect = value;
    } else if (name == "--metrics") {
      o.metrics = value;
    } else if (name == "--requests") {
      ok = parse_number(value, o.requests) && o.requests <= UINT32_MAX;
    } else if (name == "--connections") {
      ok = parse_number(value, o.connections) && o.connections > 0;
    } else if (name == "--window") {
      ok = parse_number(value, o.window) && o.window > 0;
    } else if (name == "--rounds") {
      ok = parse_number(value, o.rounds) && o.rounds > 0 && o.rounds <= request_work::max_rounds &&
           request_work::work(std::string(64, 'x'), o.rounds) <= request_work::max_work;
    } else if (name == "--workers" || name == "--queue") {
      std::size_t n = 0;
      ok = parse_number(value, n);
      (name == "--workers" ? o.workers : o.queue) = value;
    } else if (name == "--max-connections") {
      ok = parse_number(value, o.max_connections);
    } else if (name == "--idle-timeout") {
      unsigned seconds = 0;
      ok = parse_number(value, seconds) && seconds > 0;
      o.idle_timeout = seconds;
    } else if (name == "--idle-connections") {
      ok = parse_number(value, o.idle_connections);
    } else if (name == "--deadline") {
      ok = parse_number(value, o.deadline) && o.deadline > 0;
    } else if (name == "--seed") {
      ok = parse_number(value, o.seed);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "load_client: bad argument '%s'\n", argv[i]);
      return false;
    }
  }
  return o.server.empty() != o.connect.empty() && (o.metrics.empty() || !o.connect.empty());
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse_args(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: load_client SERVER [--requests=N] [--connections=C] [--window=W] [--rounds=R] [--workers=N]\n"
                 "                   [--queue=N] [--max-connections=N] [--idle-timeout=SECONDS] [--idle-connections=N]\n"
                 "                   [--deadline=SECONDS] [--seed=N]\n"
                 "       load_client --connect=ADDRESS:PORT [--metrics=ADDRESS:PORT] [same options]\n");
    return 2;
  }
  const clock_type::time_point deadline = clock_type::now() + std::chrono::seconds(o.deadline);
  const std::vector<request> requests = make_requests(o);
  if (clock_type::now() >= deadline) {
    fail("the deadline passed while working out the expected answers");
    return 1;
  }

  server_process server;
  std::optional<tcp::endpoint> endpoint;
  std::optional<tcp::endpoint> metrics_endpoint;
  if (o.connect.empty()) {
    // The server's own bound: it goes away even if this process is killed before it stops it.
    std::vector<std::string> args{o.server, "0", "0", "--max-seconds=" + std::to_string(o.deadline + 10)};
    if (!o.workers.empty()) args.push_back("--workers=" + o.workers);
    if (!o.queue.empty()) args.push_back("--queue=" + o.queue);
    if (!o.idle_timeout) o.idle_timeout = 2;
    args.push_back("--idle-timeout=" + std::to_string(*o.idle_timeout));
    args.push_back("--max-connections=" + std::to_string(o.max_connections));
    if (!server.spawn(args)) return 1;
    const auto line = server.read_line(deadline);
    if (!line) return 1;
    unsigned port = 0;
    unsigned metrics_port = 0;
    if (std::sscanf(line->c_str(), "listening 127.0.0.1:%u metrics 127.0.0.1:%u", &port, &metrics_port) != 2) {
      fail("unexpected first line from the server: " + *line);
      return 1;
    }
    const auto loopback = asio::ip::address_v4::loopback();
    endpoint = tcp::endpoint(loopback, static_cast<unsigned short>(port));
    metrics_endpoint = tcp::endpoint(loopback, static_cast<unsigned short>(metrics_port));
  } else {
    endpoint = parse_endpoint(o.connect);
    if (!o.metrics.empty()) metrics_endpoint = parse_endpoint(o.metrics);
    if (!endpoint || (!o.metrics.empty() && !metrics_endpoint)) {
      std::fprintf(stderr, "load_client: --connect and --metrics take ADDRESS:PORT\n");
      return 2;
    }
  }

  asio::io_context io;
  std::uint64_t oks = check_protocol(io, *endpoint, deadline);
  std::uint64_t busy = 0;
  if (!failed) {
    load_test load(io, *endpoint, requests, o);
    if (load.run(deadline)) {
      oks += requests.size();
      busy = load.busy();
      auto& latencies = load.latencies();
      std::sort(latencies.begin(), latencies.end());
      // Nearest rank.
      const auto percentile = [&](double p) {
        const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(latencies.size())));
        return micros(latencies[std::max<std::size_t>(rank, 1) - 1]);
      };
      std::printf(
          "load: %zu requests (%u rounds) over %zu connections, window %zu: %.3f s, %.0f requests/s; latency p50 "
          "%.0f us, p99 %.0f us, max %.0f us; %" PRIu64 " BUSY replies (retried)\n",
          requests.size(), o.rounds, o.connections, o.window, load.seconds(),
          static_cast<double>(requests.size()) / load.seconds(), latencies.empty() ? 0.0 : percentile(0.50),
          latencies.empty() ? 0.0 : percentile(0.99), latencies.empty() ? 0.0 : micros(latencies.back()), busy);
    }
  }
  if (!failed && metrics_endpoint) {
    // The server's workers: as passed on, or one per core of this machine for a server we started.
    std::size_t workers = 0;
    if (!o.workers.empty()) {
      parse_number(o.workers, workers);
    } else if (o.connect.empty()) {
      workers = std::max(1u, std::thread::hardware_concurrency());
    }
    check_reset(io, *endpoint, *metrics_endpoint, workers, deadline);
  }
  if (!failed && o.idle_timeout && o.idle_connections > 0) {
    check_idle(*endpoint, o.idle_connections, o.max_connections, *o.idle_timeout, deadline);
  }
  if (!failed && metrics_endpoint) check_metrics(io, *metrics_endpoint, oks, busy, deadline);
  if (o.connect.empty()) server.terminate(deadline);
  if (failed) return 1;
  std::printf("load_client: all checks passed\n");
  return 0;
}
