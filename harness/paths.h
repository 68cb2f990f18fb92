#pragma once
// Where the program finds what it reads at run time: the suite files, its Python parts (plots, the
// model) and the results schema. Installed (`cmake --install`): share/longattn beside the bin/
// folder holding the program. Otherwise the source tree it was built from.
#include <string>

namespace longattn {

std::string data_dir();           // ".../share/longattn" or the source tree; no trailing slash
std::string program_path();       // this program, as /proc/self/exe names it
std::string python_executable();  // the interpreter CMake found (find_package(Python3))

}  // namespace longattn
