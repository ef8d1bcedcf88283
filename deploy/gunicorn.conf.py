"""gunicorn's settings for the shop, wherever gunicorn runs it: the production stack
(deploy/stack.py, behind nginx), the tests' live servers (tests/support/processes.py)
and the benchmarks (bench/procs.py). Each passes ``-c deploy/gunicorn.conf.py`` and
sets its own address, workers and threads; a setting given on the command line wins.
"""

worker_class = "gthread"
timeout = 60

# A kept-alive connection left idle is closed by whichever end times out first. If the
# server does, a request the client sends on it in that instant is lost: the client
# reads a reset (or an empty answer), and nginx answers such a POST 502, as it never
# resends a POST. gunicorn's default is 2 s, shorter than every client that reuses
# connections. So gunicorn waits longer than they do: nginx drops its idle upstream
# connections after 60 s (keepalive_timeout in deploy/nginx.conf's upstream), httpx
# after 5 s. tests/reliability/test_keep_alive.py holds them to it.
keepalive = 75
