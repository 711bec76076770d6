"""The process that owns every job: admission, the life cycle, spawning through the sandbox helper, limits,
time limits, ending whole process trees, and settling. It never imports the front end."""
