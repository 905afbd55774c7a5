// A compute kernel on tidepool: renders the Mandelbrot set with parallel_for, one row per index,
// and checks it pixel for pixel against the serial render.
//
//   examples/mandelbrot [width height max_iterations] [--pgm out.pgm]

#include <tidepool/tidepool.hpp>

#include <chrono>   // for std::chrono::steady_clock
#include <cstdio>   // for std::printf, std::fopen
#include <cstdlib>  // for std::atoi
#include <cstring>  // for std::strcmp
#include <vector>   // for std::vector

namespace {

struct image {
  int width;
  int height;
  std::vector<unsigned char> pixels;  // escape time, scaled to 0..255
};

unsigned char escape_time(int x, int y, const image& img, int max_iterations) {
  const double cr = -2.2 + 3.2 * x / img.width;
  const double ci = -1.2 + 2.4 * y / img.height;
  double zr = 0;
  double zi = 0;
  int i = 0;
  for (; i < max_iterations && zr * zr + zi * zi <= 4.0; ++i) {
    const double next = zr * zr - zi * zi + cr;
    zi = 2 * zr * zi + ci;
    zr = next;
  }
  return static_cast<unsigned char>(255 * i / max_iterations);
}

void render_row(image& img, int y, int max_iterations) {
  for (int x = 0; x < img.width; ++x) img.pixels[static_cast<std::size_t>(y * img.width + x)] = escape_time(x, y, img, max_iterations);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int width = argc > 3 ? std::atoi(argv[1]) : 800;
  const int height = argc > 3 ? std::atoi(argv[2]) : 600;
  const int max_iterations = argc > 3 ? std::atoi(argv[3]) : 500;
  const char* pgm = nullptr;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--pgm") == 0) pgm = argv[i + 1];
  }

  image serial{width, height, std::vector<unsigned char>(static_cast<std::size_t>(width) * height)};
  auto start = std::chrono::steady_clock::now();
  for (int y = 0; y < height; ++y) render_row(serial, y, max_iterations);
  const double serial_seconds = seconds_since(start);

  tidepool::pool pool;
  image parallel{width, height, std::vector<unsigned char>(static_cast<std::size_t>(width) * height)};
  start = std::chrono::steady_clock::now();
  tidepool::parallel_for(pool, 0, height, [&](int y) { render_row(parallel, y, max_iterations); }, 1);
  const double parallel_seconds = seconds_since(start);

  std::size_t different = 0;
  for (std::size_t i = 0; i < serial.pixels.size(); ++i) different += serial.pixels[i] != parallel.pixels[i];
  std::printf("mandelbrot %dx%d, %d iterations: serial %.1f ms, tidepool (%zu workers) %.1f ms, %zu pixels differ\n",
              width, height, max_iterations, serial_seconds * 1e3, pool.workers(), parallel_seconds * 1e3, different);
  if (pgm != nullptr) {
    if (std::FILE* f = std::fopen(pgm, "wb")) {
      std::fprintf(f, "P5\n%d %d\n255\n", width, height);
      std::fwrite(parallel.pixels.data(), 1, parallel.pixels.size(), f);
      std::fclose(f);
    }
  }
  return different == 0 ? 0 : 1;
}
