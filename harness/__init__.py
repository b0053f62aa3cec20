"""What liveroom's tests (tests/) and benchmarks (bench/) share: real server processes and the
proxy in front of them (servers.py, proxy.py), fault injection (faults.py), Chromium
(browsers.py), and waiting for a condition instead
of sleeping (waiting.py). Not part of the package: a project built on liveroom tests with
`liveroom.testing`."""
