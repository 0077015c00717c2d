#!/usr/bin/python3
"""An RTSP server in record mode (GStreamer's gst-rtsp-server) that takes
an RTP/JPEG stream pushed to it (ANNOUNCE, SETUP mode=record, RECORD) over
TCP, behind a user name and password, and writes each frame to a file.

Usage: gst_record_server.py PORT PATH USER PASSWORD basic|digest OUTDIR

Runs under the Debian interpreter (/usr/bin/python3), where python3-gi and
gir1.2-gst-rtsp-server-1.0 live. Prints "ready" once it listens.
"""
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> int:
    port, path, user, password, method, out = sys.argv[1:7]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    factory.set_launch(
        f"( rtpjpegdepay name=depay0 ! multifilesink location={out}/%06d.jpg )"
    )
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", user)
    if method == "digest":
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(user, password, token)
    else:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(user, "media.factory.access", True)
    permissions.add_permission_for_role(user, "media.factory.construct", True)
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        return 1
    print("ready", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
