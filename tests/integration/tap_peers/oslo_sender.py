"""A real oslo.messaging client that sends what nova sends: a context with tokens, secret args.

    python oslo_sender.py URL EXCHANGE TOPIC KIND [--server S] [--count N] [--compression C]

KIND is cast, fanout or call (call waits for the reply and prints it). The context is an
oslo.context RequestContext as nova builds one (auth_token, a service catalog, user/project),
plus a keystone token body and a service token, as some services pass them; the arguments
carry an admin password and a volume's CHAP secret deep inside, like rebuild_instance and
attach_volume do. The secrets are the strings in SECRETS: a tap must never print one.
"""

from __future__ import annotations

import argparse
import json
import sys

import oslo_messaging
from oslo_config import cfg
from oslo_context import context as oslo_context

SECRETS = {
    "auth_token": "gAAAAABtoken-fernet-0123456789",
    "service_token": "gAAAAABservice-token-9876543210",
    "token_info_id": "keystone-token-body-id-42",
    "admin_password": "Sup3r-admin-pa55",
    "chap": "chap-secret-of-the-volume",
    "url_password": "rabbit-url-password-77",
}


class NovaContext(oslo_context.RequestContext):
    """What nova.context.RequestContext.to_dict adds to oslo.context's."""

    def to_dict(self):
        values = super().to_dict()
        values.update(
            user_name="alice",
            project_name="demo",
            service_catalog=[{"type": "volumev3", "name": "cinderv3"}],
            auth_token_info={"token": {"id": SECRETS["token_info_id"], "expires_at": "x"}},
            service_token=SECRETS["service_token"],
        )
        return values


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("exchange")
    parser.add_argument("topic")
    parser.add_argument("kind", choices=("cast", "fanout", "call"))
    parser.add_argument("--server")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--method", default="echo")
    parser.add_argument("--compression")
    options = parser.parse_args()

    conf = cfg.CONF
    conf([], project="tapsender")
    oslo_messaging.set_transport_defaults(options.exchange)
    url = options.url
    if options.compression:  # a URL query sets [oslo_messaging_rabbit] options in oslo
        url += ("&" if "?" in url else "?") + f"kombu_compression={options.compression}"
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    target = oslo_messaging.Target(
        topic=options.topic, server=options.server, fanout=options.kind == "fanout"
    )
    client = oslo_messaging.get_rpc_client(transport, target, timeout=20)
    context = NovaContext(
        auth_token=SECRETS["auth_token"],
        user_id="alice-id",
        project_id="demo-id",
        request_id="req-11111111-2222-3333-4444-555555555555",
    )
    args = {
        "value": {
            "admin_password": SECRETS["admin_password"],
            "block_device_info": {
                "connection_info": {
                    "driver_volume_type": "iscsi",
                    "data": {"auth_method": "CHAP", "auth_password": SECRETS["chap"]},
                }
            },
            "note": f"rabbit://nova:{SECRETS['url_password']}@mq:5672/",
        }
    }
    for _ in range(options.count):
        if options.kind == "call":
            print(json.dumps(client.call(context, options.method, **args)), flush=True)
        else:
            client.cast(context, options.method, **args)
    reply_q = getattr(getattr(transport, "_driver", None), "_reply_q", None)
    transport.cleanup()
    if reply_q:  # oslo leaves its reply queue to expire (30 min); a test leaves nothing
        import pika

        amqp_url = (
            "amqp" + options.url[len("rabbit") :]
            if options.url.startswith("rabbit")
            else options.url
        )
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        connection.channel().queue_delete(reply_q)
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
