#pragma once
// Outputs are never half written. A regular file (or a new one) is written to
// PATH.tmp.HOST.PID, flushed to disk (fsync) and renamed over PATH only on commit(); the temporary
// is removed if commit() is never reached. Anything else (a character device such as /dev/null,
// a pipe) is written through: renaming over it would replace the device with a regular file.
// AtomicFiles commits a group together: every output complete, then every rename.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/input_error.h"

namespace longattn {

// Can `path` be written as an output? Checked before any work starts, so that a long run does not
// fail at its end. `flag` names the option in the message.
inline void check_output_path(const std::string& path, const std::string& flag) {
  const std::string shown = path.size() > 100 ? path.substr(0, 100) + "..." : path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw InputError(flag + ": " + shown + " is a directory; name a file");
    if (!S_ISREG(st.st_mode)) return;  // a device or a pipe: written through
  }
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw InputError(flag + ": directory " + (dir.size() > 100 ? dir.substr(0, 100) + "..." : dir) +
                     " does not exist; create it first");
  if (::access(dir.c_str(), W_OK) != 0)
    throw InputError(flag + ": directory " + (dir.size() > 100 ? dir.substr(0, 100) + "..." : dir) + " is not writable");
}

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path) {
    struct stat st;
    const bool exists = ::stat(path.c_str(), &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) throw InputError(shown(path) + ": is a directory; name a file");
    through_ = exists && !S_ISREG(st.st_mode);
    if (!through_) {
      char host[64] = {};
      gethostname(host, sizeof host - 1);
      tmp_ = path + ".tmp." + host + "." + std::to_string(getpid());
    }
    const std::string& target = through_ ? path : tmp_;
    fd_ = ::open(target.c_str(), through_ ? O_WRONLY : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      tmp_.clear();
      throw InputError(shown(path) + ": cannot write here (" + std::strerror(errno) +
                       "); check the directory exists and is writable");
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0 && error_ == 0) {
      const ssize_t n = ::write(fd_, p, bytes);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = n < 0 ? errno : ENOSPC;
        break;
      }
      p += n, bytes -= static_cast<size_t>(n);
    }
  }
  void write(const std::string& s) { write(s.data(), s.size()); }

  // Data complete and on disk; throws InputError if any write failed. The rename is rename().
  void finish() {
    if (error_ == 0 && !through_ && ::fsync(fd_) != 0) error_ = errno;
    if (::close(fd_) != 0 && error_ == 0 && !through_) error_ = errno;
    fd_ = -1;
    if (error_ != 0) throw InputError(shown(path_) + ": writing failed (" + std::strerror(error_) + ")");
  }
  void rename() {
    if (!through_ && std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw InputError(shown(path_) + ": writing failed (rename: " + std::strerror(errno) + ")");
    tmp_.clear();
  }
  void commit() { finish(), rename(); }

  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) std::remove(tmp_.c_str());
  }

 private:
  static std::string shown(const std::string& p) { return p.size() > 100 ? p.substr(0, 100) + "..." : p; }
  std::string path_, tmp_;
  int fd_ = -1;
  int error_ = 0;
  bool through_ = false;
};

}  // namespace longattn
