// The TCP server backend of issue #6, on coroutines (issue #12): one Boost.Asio I/O thread
// accepts connections and runs each one as coroutines (co_spawn) that parse line-based requests;
// each request's CPU work is a task on a tidepool::pool, which the connection awaits with
// tidepool::async_get, so that no thread waits for it. The pool's metrics are served for Prometheus.
//
//   examples/server [PORT [METRICS_PORT]] [--workers=N] [--queue=N] [--max-pending=N]
//                   [--max-connections=N] [--idle-timeout=SECONDS] [--max-seconds=N]
//
// Listens on 127.0.0.1 only (port 0, the default: any free port), prints one line to stdout
//   listening 127.0.0.1:<port> metrics 127.0.0.1:<metrics port>
// and serves until SIGTERM or SIGINT, or for at most --max-seconds (default 0: no limit). Then it
// stops reading, writes the replies still owed (for up to 2 s), stops the pool and exits 0.
//
//   printf 'HASH 1000 hello\n' | nc -q1 127.0.0.1 <port>
//   curl http://127.0.0.1:<metrics port>/metrics
//   examples/load_client --connect=127.0.0.1:<port> --metrics=127.0.0.1:<metrics port>
//
// Protocol: one request per line ('\n', optionally "\r\n"); replies come in request order, and
// requests may be pipelined.
//   HASH <rounds> <payload>   → OK <16 hex digits>   (request_work.hpp: the work and the answer)
//   anything malformed        → ERR <reason>
//   the pool's queue is full  → BUSY                 (nothing was done: try again later)
//   a line over 64 KiB        → ERR line too long, and the server closes the connection
//
// Every resource is bounded: the pool accepts at most workers + --queue unfinished tasks (default
// 256 queued) and the server submits with try_submit, so overload turns into BUSY replies instead
// of a growing queue. Each connection has at most --max-pending requests (default 64) whose reply
// is not written yet; beyond that the server stops reading from it, so a client that pipelines
// without reading is slowed by TCP, not buffered. At most --max-connections (default 256)
// connections are served; more are closed at once. A connection idle for --idle-timeout seconds
// (default 30; 0: never) — nothing received, no reply owed — is closed, so idle clients cannot
// hold every slot. A connection that is reset (or whose replies cannot be written) is closed at
// once, and the work of its queued requests is cancelled (a stop token in the tasks'
// submit_options): it would only delay the live clients' requests (counted `cancelled` in /metrics).

#include <tidepool/asio.hpp>  // first: it enables Asio's coroutines for clang
#include <tidepool/tidepool.hpp>

#include <boost/asio/co_spawn.hpp>        // for boost::asio::co_spawn
#include <boost/asio/detached.hpp>        // for boost::asio::detached
#include <boost/asio/io_context.hpp>      // for boost::asio::io_context
#include <boost/asio/ip/tcp.hpp>          // for boost::asio::ip::tcp
#include <boost/asio/read_until.hpp>      // for boost::asio::async_read_until
#include <boost/asio/redirect_error.hpp>  // for boost::asio::redirect_error
#include <boost/asio/signal_set.hpp>      // for boost::asio::signal_set
#include <boost/asio/steady_timer.hpp>    // for boost::asio::steady_timer
#include <boost/asio/streambuf.hpp>       // for boost::asio::streambuf
#include <boost/asio/use_awaitable.hpp>   // for boost::asio::use_awaitable
#include <boost/asio/write.hpp>           // for boost::asio::async_write

#include <array>          // for std::array
#include <charconv>       // for std::from_chars
#include <chrono>         // for std::chrono
#include <csignal>        // for SIGINT, SIGTERM
#include <cstdint>        // for std::uint32_t, std::uint64_t
#include <cstdio>         // for std::printf, std::fprintf
#include <deque>          // for std::deque
#include <exception>      // for std::exception
#include <memory>         // for std::shared_ptr, std::enable_shared_from_this
#include <optional>       // for std::optional
#include <stop_token>     // for std::stop_source
#include <string>         // for std::string
#include <string_view>    // for std::string_view
#include <system_error>   // for std::errc
#include <unordered_set>  // for std::unordered_set
#include <utility>        // for std::move

#include "request_work.hpp"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr std::size_t max_line = 64 * 1024;

struct config {
  unsigned short port = 0;
  unsigned short metrics_port = 0;
  std::size_t workers = 0;  // 0: one per core
  std::size_t queue = 256;
  std::size_t max_pending = 64;
  std::size_t max_connections = 256;
  unsigned idle_timeout = 30;
  unsigned max_seconds = 0;
};

struct counters {
  std::uint64_t connections = 0;
  std::uint64_t refused_connections = 0;
  std::uint64_t requests = 0;
  std::uint64_t busy = 0;
  std::uint64_t errors = 0;
  std::uint64_t idle_closed = 0;  // connections closed by the idle timeout
  std::uint64_t abandoned = 0;    // requests of closed connections whose work was cancelled or unread
  std::uint64_t scrapes = 0;
};

template <class T>
bool parse_number(std::string_view text, T& value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end && !text.empty();
}

// Parses "HASH <rounds> <payload>" (the payload is the rest of the line, spaces included).
// Returns the reason it is malformed, or nullptr.
const char* parse_request(std::string_view line, std::uint32_t& rounds, std::string_view& payload) {
  constexpr std::string_view verb = "HASH ";
  if (!line.starts_with(verb)) return "unknown command";
  line.remove_prefix(verb.size());
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos) return "expected HASH <rounds> <payload>";
  if (!parse_number(line.substr(0, space), rounds)) return "rounds is not a number";
  if (rounds == 0 || rounds > request_work::max_rounds) return "rounds out of range";
  payload = line.substr(space + 1);
  if (request_work::work(payload, rounds) > request_work::max_work) return "too much work";
  return nullptr;
}

class server;

// One client connection: two coroutines on the I/O thread, co_spawn'ed when it is accepted. The
// reader parses requests and queues a slot for each reply, in request order: an answer at once
// (ERR, BUSY) or the pool's task computing it. The writer awaits the slots in order, the tasks
// with tidepool::async_get (no thread waits; the task's completion resumes the writer on the I/O
// thread), and writes what is ready in one go. A third one closes the connection when idle.
// Every member is touched on the I/O thread only; the pool's tasks get copies of the payload.
class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(server& s, tcp::socket socket)
      : server_(s),
        socket_(std::move(socket)),
        reader_wake_(socket_.get_executor()),
        writer_wake_(socket_.get_executor()),
        idle_(socket_.get_executor()),
        linger_(socket_.get_executor()),
        last_active_(std::chrono::steady_clock::now()) {
    reader_wake_.expires_at(std::chrono::steady_clock::time_point::max());
    writer_wake_.expires_at(std::chrono::steady_clock::time_point::max());
  }

  void start();
  // Takes no more requests; the replies still owed are written, then the connection closes.
  void finish_up() {
    no_more_requests_ = true;
    wake(reader_wake_);
    wake(writer_wake_);
  }
  // Closes now, and cancels the pool work of the requests still queued: it would only delay the
  // live clients' requests, and nobody is left to read its answers.
  void close();

 private:
  // A reply, in request order: known at once, or being computed by the pool.
  struct reply_slot {
    std::string text;
    std::optional<tidepool::task<std::string>> work;
  };

  asio::awaitable<void> read_requests();
  asio::awaitable<void> write_replies();
  asio::awaitable<void> close_when_idle();
  void parse_lines();
  void line_too_long();
  void handle_line(std::string_view line);
  void reply_now(std::string reply) {
    replies_.push_back({std::move(reply), std::nullopt});
    ++unanswered_;
  }
  // The timers below serve as condition variables for the coroutines (all on one thread).
  static asio::awaitable<void> sleep_until_woken(asio::steady_timer& t) {
    error_code ignored;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  static void wake(asio::steady_timer& t) { t.cancel(); }
  // Runs one of our coroutines; whatever it throws (a socket error) closes the connection.
  void spawn(asio::awaitable<void> (connection::*body)());

  server& server_;
  tcp::socket socket_;
  asio::steady_timer reader_wake_;  // woken when a reply was written (max_pending) or on finish_up
  asio::steady_timer writer_wake_;  // woken when a reply slot is queued, or on finish_up
  asio::steady_timer idle_;
  asio::steady_timer linger_;
  std::chrono::steady_clock::time_point last_active_;  // the last byte read or written
  std::array<char, 16 * 1024> chunk_;
  std::string input_;  // received, not parsed yet: reading stops before it exceeds max_line + a chunk
  std::deque<reply_slot> replies_;
  std::string out_;
  std::size_t unanswered_ = 0;  // requests parsed whose reply is not written yet
  // The pool work of this connection's requests: a stop request skips the tasks not yet started.
  std::stop_source queued_work_;
  bool no_more_requests_ = false;
  bool peer_done_ = false;  // the peer closed its side
  bool fin_sent_ = false;
  bool closed_ = false;
};

// The /metrics responder: one request per connection, then close.
class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(server& s, tcp::socket socket)
      : server_(s), socket_(std::move(socket)), timer_(socket_.get_executor()), request_(8 * 1024) {}
  void start();
  void close();

 private:
  void respond();

  server& server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf request_;  // bounded: a longer request head fails the read
  std::string response_;
  bool closed_ = false;
};

class server {
 public:
  server(asio::io_context& io, tidepool::pool& pool, const config& cfg)
      : pool(pool),
        cfg(cfg),
        acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), cfg.port)),
        metrics_acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), cfg.metrics_port)),
        signals_(io, SIGINT, SIGTERM),
        max_time_(io),
        drain_(io),
        accept_retry_(io),
        metrics_accept_retry_(io) {}

  void start() {
    signals_.async_wait([this](error_code ec, int signal) {
      if (ec) return;
      std::fprintf(stderr, "server: signal %d, stopping\n", signal);
      stop();
    });
    if (cfg.max_seconds > 0) {
      max_time_.expires_after(std::chrono::seconds(cfg.max_seconds));
      max_time_.async_wait([this](error_code ec) {
        if (ec) return;
        std::fprintf(stderr, "server: --max-seconds=%u reached, stopping\n", cfg.max_seconds);
        stop();
      });
    }
    accept(acceptor_, accept_retry_, &server::on_client);
    accept(metrics_acceptor_, metrics_accept_retry_, &server::on_scraper);
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  unsigned short metrics_port() const { return metrics_acceptor_.local_endpoint().port(); }

  // Accepts nothing more, lets every connection write what it owes, and closes what is left after
  // 2 s. io_context::run() returns once everything is closed.
  void stop() {
    if (stopping_) return;
    stopping_ = true;
    error_code ignored;
    acceptor_.close(ignored);
    metrics_acceptor_.close(ignored);
    signals_.cancel(ignored);
    max_time_.cancel();
    accept_retry_.cancel();
    metrics_accept_retry_.cancel();
    // Copies: closing removes from the sets.
    for (const auto& s : std::unordered_set(http_sessions_)) s->close();
    for (const auto& c : std::unordered_set(connections_)) c->finish_up();
    if (connections_.empty()) return;
    drain_.expires_after(std::chrono::seconds(2));
    drain_.async_wait([this](error_code ec) {
      if (ec) return;
      std::fprintf(stderr, "server: closing %zu connections that did not finish in time\n", connections_.size());
      for (const auto& c : std::unordered_set(connections_)) c->close();
    });
  }

  void forget(const std::shared_ptr<connection>& c) {
    connections_.erase(c);
    if (stopping_ && connections_.empty()) drain_.cancel();
  }
  void forget(const std::shared_ptr<http_session>& s) { http_sessions_.erase(s); }

  tidepool::pool& pool;
  const config cfg;
  counters stats;

 private:
  using on_socket = void (server::*)(tcp::socket);

  void accept(tcp::acceptor& acceptor, asio::steady_timer& retry, on_socket handle) {
    acceptor.async_accept([this, &acceptor, &retry, handle](error_code ec, tcp::socket socket) {
      if (stopping_ || ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors, say: try again a little later rather than spin.
        std::fprintf(stderr, "server: accept: %s\n", ec.message().c_str());
        retry.expires_after(std::chrono::milliseconds(50));
        retry.async_wait([this, &acceptor, &retry, handle](error_code e) {
          if (!e && !stopping_) accept(acceptor, retry, handle);
        });
        return;
      }
      (this->*handle)(std::move(socket));
      accept(acceptor, retry, handle);
    });
  }

  void on_client(tcp::socket socket) {
    if (connections_.size() >= cfg.max_connections) {
      ++stats.refused_connections;
      return;  // the socket closes as it goes out of scope
    }
    ++stats.connections;
    error_code ignored;
    // Replies are small and the client waits for them: Nagle's algorithm would hold them back.
    socket.set_option(tcp::no_delay(true), ignored);
    auto c = std::make_shared<connection>(*this, std::move(socket));
    connections_.insert(c);
    c->start();
  }

  void on_scraper(tcp::socket socket) {
    if (http_sessions_.size() >= 16) return;
    auto s = std::make_shared<http_session>(*this, std::move(socket));
    http_sessions_.insert(s);
    s->start();
  }

  tcp::acceptor acceptor_;
  tcp::acceptor metrics_acceptor_;
  asio::signal_set signals_;
  asio::steady_timer max_time_;
  asio::steady_timer drain_;
  asio::steady_timer accept_retry_;
  asio::steady_timer metrics_accept_retry_;
  std::unordered_set<std::shared_ptr<connection>> connections_;
  std::unordered_set<std::shared_ptr<http_session>> http_sessions_;
  bool stopping_ = false;
};

void connection::start() {
  spawn(&connection::read_requests);
  spawn(&connection::write_replies);
  if (server_.cfg.idle_timeout > 0) spawn(&connection::close_when_idle);
}

void connection::spawn(asio::awaitable<void> (connection::*body)()) {
  // The coroutine owns a reference, so that the connection lives as long as any of them runs.
  asio::co_spawn(
      socket_.get_executor(),
      [](std::shared_ptr<connection> self, asio::awaitable<void> (connection::*run)()) -> asio::awaitable<void> {
        try {
          co_await (self.get()->*run)();
        } catch (const std::exception&) {
          self->close();  // a failed read or write, or the work of a closed connection cancelled
        }
      }(shared_from_this(), body),
      asio::detached);
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  for (const reply_slot& slot : replies_) server_.stats.abandoned += slot.work.has_value();
  queued_work_.request_stop();
  error_code ignored;
  socket_.close(ignored);
  reader_wake_.cancel();
  writer_wake_.cancel();
  idle_.cancel();
  linger_.cancel();
  server_.forget(shared_from_this());
}

asio::awaitable<void> connection::read_requests() {
  for (;;) {
    parse_lines();  // what was received already, as far as max_pending allows
    if (closed_) co_return;
    if (!no_more_requests_ && unanswered_ >= server_.cfg.max_pending) {
      // The client waits for TCP now, not us for it: read on once it has taken some replies.
      co_await sleep_until_woken(reader_wake_);
      continue;
    }
    error_code ec;
    const std::size_t n =
        co_await socket_.async_read_some(asio::buffer(chunk_), asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) co_return;
    if (ec == asio::error::eof) {
      // The peer sent its last request; it still gets every reply.
      peer_done_ = true;
      if (fin_sent_) {
        close();
      } else {
        finish_up();
      }
      co_return;
    }
    if (ec) {
      close();  // reset: nobody will read the replies, so its queued work is cancelled
      co_return;
    }
    last_active_ = std::chrono::steady_clock::now();
    // Input after the last request is dropped (and after our FIN, drained until the peer closes).
    if (!no_more_requests_) input_.append(chunk_.data(), n);
  }
}

void connection::parse_lines() {
  std::size_t parsed = 0;
  bool need_more = false;
  while (!no_more_requests_ && unanswered_ < server_.cfg.max_pending) {
    const std::size_t end = input_.find('\n', parsed);
    if (end == std::string::npos) {
      need_more = true;
      break;
    }
    if (end - parsed > max_line) {
      line_too_long();
      break;
    }
    std::string_view line(input_.data() + parsed, end - parsed);
    parsed = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    handle_line(line);
  }
  if (need_more && input_.size() - parsed > max_line) line_too_long();
  if (no_more_requests_) {
    input_.clear();
  } else {
    input_.erase(0, parsed);
  }
  wake(writer_wake_);
}

void connection::line_too_long() {
  ++server_.stats.errors;
  reply_now("ERR line too long\n");
  no_more_requests_ = true;
}

void connection::handle_line(std::string_view line) {
  ++server_.stats.requests;
  std::uint32_t rounds = 0;
  std::string_view payload;
  if (const char* reason = parse_request(line, rounds, payload)) {
    ++server_.stats.errors;
    reply_now("ERR " + std::string(reason) + '\n');
    return;
  }
  tidepool::submit_options options;
  options.stop_token = queued_work_.get_token();  // close() skips what has not started
  auto work = server_.pool.try_submit(
      [rounds, payload = std::string(payload)] { return "OK " + request_work::answer(payload, rounds) + '\n'; },
      options);
  if (!work) {
    ++server_.stats.busy;
    reply_now("BUSY\n");
    return;
  }
  replies_.push_back({std::string(), std::move(*work)});
  ++unanswered_;
}

asio::awaitable<void> connection::write_replies() {
  for (;;) {
    if (closed_) co_return;
    if (replies_.empty()) {
      if (no_more_requests_) break;
      co_await sleep_until_woken(writer_wake_);
      continue;
    }
    // The first reply, awaited; then every one after it that is ready, in one write.
    std::size_t count = 0;
    do {
      reply_slot slot = std::move(replies_.front());
      replies_.pop_front();
      if (slot.work) {
        // Resumes here, on the I/O thread, when the pool has run the task. It throws
        // task_cancelled only if close() cancelled it, and then the caller just ends.
        slot.text = co_await tidepool::async_get(std::move(*slot.work), asio::use_awaitable);
        if (closed_) co_return;
      }
      out_ += slot.text;
      ++count;
    } while (!replies_.empty() && (!replies_.front().work || replies_.front().work->ready()));
    co_await asio::async_write(socket_, asio::buffer(out_), asio::use_awaitable);
    last_active_ = std::chrono::steady_clock::now();
    out_.clear();
    unanswered_ -= count;
    wake(reader_wake_);  // requests held back by max_pending may go now
  }
  if (closed_) co_return;
  if (peer_done_) {
    close();
    co_return;
  }
  fin_sent_ = true;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  // Closing with unread input would reset the connection, and the peer could lose the replies
  // just sent: the reader drops what comes until the peer closes too, for at most a second.
  linger_.expires_after(std::chrono::seconds(1));
  co_await linger_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  close();
}

asio::awaitable<void> connection::close_when_idle() {
  const auto timeout = std::chrono::seconds(server_.cfg.idle_timeout);
  while (!closed_) {
    idle_.expires_at(last_active_ + timeout);
    error_code ignored;
    co_await idle_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (closed_) co_return;
    const auto now = std::chrono::steady_clock::now();
    if (unanswered_ > 0) {
      last_active_ = now;  // the client waits for us: not idle
    } else if (now - last_active_ >= timeout) {
      ++server_.stats.idle_closed;
      close();
    }
  }
}

void http_session::start() {
  timer_.expires_after(std::chrono::seconds(5));
  timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec) self->close();
  });
  asio::async_read_until(socket_, request_, "\r\n\r\n", [self = shared_from_this()](error_code ec, std::size_t) {
    if (ec) {
      self->close();
      return;
    }
    self->respond();
  });
}

void http_session::close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
  server_.forget(shared_from_this());
}

void http_session::respond() {
  const auto data = request_.data();
  const std::string head(asio::buffers_begin(data), asio::buffers_end(data));
  const std::string_view line = std::string_view(head).substr(0, head.find("\r\n"));
  // Request line: METHOD SP TARGET SP VERSION
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  std::string_view status = "400 Bad Request";
  std::string_view headers = "Content-Type: text/plain\r\n";
  std::string body = "bad request\n";
  bool head_only = false;
  if (sp2 != std::string_view::npos && line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    const std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    head_only = method == "HEAD";
    if (method != "GET" && method != "HEAD") {
      status = "405 Method Not Allowed";
      headers = "Content-Type: text/plain\r\nAllow: GET, HEAD\r\n";
      body = "method not allowed\n";
    } else if (target != "/metrics") {
      status = "404 Not Found";
      body = "not found: try /metrics\n";
    } else {
      status = "200 OK";
      headers = "Content-Type: text/plain; version=0.0.4\r\n";
      body = tidepool::to_prometheus(server_.pool.metrics(), "tidepool");
      ++server_.stats.scrapes;
    }
  }
  response_ = "HTTP/1.1 " + std::string(status) + "\r\n" + std::string(headers) +
              "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (!head_only) response_ += body;
  asio::async_write(socket_, asio::buffer(response_),
                    [self = shared_from_this()](error_code, std::size_t) { self->close(); });
}

bool parse_args(int argc, char** argv, config& cfg) {
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : arg.substr(eq + 1);
    bool ok = true;
    if (!arg.starts_with("--")) {
      ok = positional < 2 && parse_number(arg, positional == 0 ? cfg.port : cfg.metrics_port);
      ++positional;
    } else if (name == "--workers") {
      ok = parse_number(value, cfg.workers);
    } else if (name == "--queue") {
      ok = parse_number(value, cfg.queue);
    } else if (name == "--max-pending") {
      ok = parse_number(value, cfg.max_pending) && cfg.max_pending > 0;
    } else if (name == "--max-connections") {
      ok = parse_number(value, cfg.max_connections);
    } else if (name == "--idle-timeout") {
      ok = parse_number(value, cfg.idle_timeout);
    } else if (name == "--max-seconds") {
      ok = parse_number(value, cfg.max_seconds);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "server: bad argument '%s'\n", argv[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  if (!parse_args(argc, argv, cfg)) {
    std::fprintf(stderr,
                 "usage: server [PORT [METRICS_PORT]] [--workers=N] [--queue=N] [--max-pending=N] "
                 "[--max-connections=N] [--idle-timeout=SECONDS] [--max-seconds=N]\n");
    return 2;
  }
  // Declared first, destroyed last: the connections' coroutines live in it.
  asio::io_context io;
  tidepool::pool_options options;
  options.workers = cfg.workers;
  options.queue_capacity = cfg.queue;
  options.name = "server";
  tidepool::pool pool(options);
  try {
    server srv(io, pool, cfg);
    srv.start();
    std::printf("listening 127.0.0.1:%u metrics 127.0.0.1:%u\n", srv.port(), srv.metrics_port());
    std::fflush(stdout);
    // Returns once every connection is closed: a pending async_get holds work on the I/O context,
    // so the tasks of connections closed by force have finished (or been skipped) by then.
    io.run();
    pool.stop_and_wait();
    const tidepool::pool_metrics m = pool.metrics();
    std::fprintf(stderr,
                 "server: stopped: %llu connections (%llu refused, %llu closed idle), %llu requests: %llu BUSY, "
                 "%llu ERR, %llu abandoned by closed connections; %llu scrapes; pool: %llu succeeded, %llu "
                 "cancelled, %llu dropped\n",
                 static_cast<unsigned long long>(srv.stats.connections),
                 static_cast<unsigned long long>(srv.stats.refused_connections),
                 static_cast<unsigned long long>(srv.stats.idle_closed),
                 static_cast<unsigned long long>(srv.stats.requests), static_cast<unsigned long long>(srv.stats.busy),
                 static_cast<unsigned long long>(srv.stats.errors), static_cast<unsigned long long>(srv.stats.abandoned),
                 static_cast<unsigned long long>(srv.stats.scrapes), static_cast<unsigned long long>(m.succeeded),
                 static_cast<unsigned long long>(m.cancelled), static_cast<unsigned long long>(m.dropped));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "server: %s\n", e.what());
    return 1;
  }
  return 0;
}
