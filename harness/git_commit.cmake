# Run at every build (cmake -DSRC=... -DOUT=... -P git_commit.cmake): writes OUT, a header defining
# LONGATTN_GIT_COMMIT as the commit of SRC, with "-dirty" where tracked files differ from it, so a
# results file names the code that was built, not the commit of the last configure. OUT is
# rewritten only when that changes, so only harness/context.cpp recompiles, and only then.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY "${SRC}" RESULT_VARIABLE failed
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(failed OR NOT commit)
  set(commit unknown)
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY "${SRC}" RESULT_VARIABLE dirty ERROR_QUIET)
  if(dirty)
    string(APPEND commit -dirty)
  endif()
endif()
set(text "#define LONGATTN_GIT_COMMIT \"${commit}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
