#include "harness/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>

#include "harness/atomic_file.h"
#include "kernels/input_error.h"

namespace longattn {

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open; check the path");
  auto fail = [&](const std::string& why) { return InputError(path + ": " + why); };
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw fail("not a .npy file (bad magic); save it with numpy.save");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) throw fail("truncated header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) throw fail("truncated header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    throw fail("unsupported .npy version " + std::to_string(major));
  }
  std::string header(header_len, '\0');
  if (header_len > (1u << 20) || !in.read(header.data(), header_len)) throw fail("truncated header");

  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) throw fail("header has no 'descr'");
  const std::string descr = m[1];
  if (descr != "<f4" && descr != "<f8")
    throw fail("dtype " + descr + " is not supported; convert with .astype(numpy.float32)");
  if (!std::regex_search(header, m, std::regex("'fortran_order':\\s*(True|False)")))
    throw fail("header has no 'fortran_order'");
  if (m[1] == "True") throw fail("Fortran order is not supported; save numpy.ascontiguousarray(x)");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) throw fail("header has no 'shape'");
  NpyArray a;
  const std::string dims = m[1];
  const std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  int64_t count = 1;
  for (int64_t s : a.shape) count *= s;
  const size_t item = descr == "<f4" ? 4 : 8;
  std::vector<char> raw(count * item);
  if (!in.read(raw.data(), static_cast<std::streamsize>(raw.size())))
    throw fail("truncated data: expected " + std::to_string(raw.size()) + " bytes for shape (" + dims + ")");
  a.data.resize(count);
  if (item == 4) {
    std::memcpy(a.data.data(), raw.data(), raw.size());
  } else {
    for (int64_t i = 0; i < count; ++i) {
      double x;
      std::memcpy(&x, raw.data() + i * 8, 8);
      a.data[i] = static_cast<float>(x);
    }
  }
  return a;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (int64_t s : shape) dims += std::to_string(s) + ", ", count *= s;
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(2, 3)" but "(2,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  AtomicFile f(path);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.out.write("\x93NUMPY\x01\x00", 8);
  f.out.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  f.out.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(float)));
  f.commit();
}

}  // namespace longattn
