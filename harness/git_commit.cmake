# Run at every build (cmake -DSRC=... -DOUT=... -P git_commit.cmake): writes OUT, a header defining
# LONGATTN_GIT_COMMIT as the commit of SRC, with "-dirty" where tracked files other than results/ and
# plots/ differ from it, so a results file names the code that was built, not the commit of the last
# configure. OUT is rewritten only when that changes, so only harness/context.cpp recompiles.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY "${SRC}" RESULT_VARIABLE failed
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(failed OR NOT commit)
  set(commit unknown)
else()
  # The suite's own outputs (results/, plots/) are tracked but are not code: they do not count.
  execute_process(COMMAND git --no-optional-locks diff --quiet HEAD -- . ":(exclude)results" ":(exclude)plots"
                  WORKING_DIRECTORY "${SRC}" RESULT_VARIABLE dirty ERROR_QUIET)
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
