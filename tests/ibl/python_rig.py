"""A Python rig on iblutil's EchoProtocol server, as labs run them.

Usage: python_rig.py udp|tcp
Prints "listening URL" first, then one line per answer it sends:
"confirmed [..]" once the peer echoed it, or "failed [..]: error".
Answers init/start/stop/cleanup/status with the same event and its status;
its info callback raises, so iblutil itself sends the error report.
"""
import asyncio
import socket
import sys

from iblutil.io.net.app import EchoProtocol
from iblutil.io.net.base import ExpMessage


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


async def main(proto):
    kind = socket.SOCK_DGRAM if proto == 'udp' else socket.SOCK_STREAM
    url = f'{proto}://127.0.0.1:{free_port(kind)}'
    rig = await EchoProtocol.server(url, name='python-rig')
    print(f'listening {url}', flush=True)
    status = {'value': 0}

    def answer(send, message):
        async def run():
            try:
                await send()
                print(f'confirmed {message}', flush=True)
            except Exception as e:  # the script must see every failure
                print(f'failed {message}: {type(e).__name__}: {e}', flush=True)
        asyncio.ensure_future(run())

    def on_init(data, addr):
        status['value'] = 10
        answer(lambda: rig.init({'status': 10}, addr=addr), '[1, {"status": 10}]')

    def on_start(data, addr):
        status['value'] = 20
        answer(lambda: rig.start(data[0], {'status': 20}, addr=addr), f'[2, "{data[0]}", {{"status": 20}}]')

    def on_stop(data, addr):
        status['value'] = 30
        answer(lambda: rig.stop({'status': 30}, addr=addr), '[4, {"status": 30}]')

    def on_cleanup(data, addr):
        status['value'] = 0
        answer(lambda: rig.cleanup({'status': 0}, addr=addr), '[8, {"status": 0}]')

    def on_status(data, addr):
        answer(lambda: rig.status(status['value'], addr=addr), f'[32, {status["value"]}]')

    def on_info(data, addr):
        raise ValueError('boom')

    for event, callback in [(ExpMessage.EXPINIT, on_init), (ExpMessage.EXPSTART, on_start),
                            (ExpMessage.EXPEND, on_stop), (ExpMessage.EXPCLEANUP, on_cleanup),
                            (ExpMessage.EXPSTATUS, on_status), (ExpMessage.EXPINFO, on_info)]:
        rig.assign_callback(event, callback)
    # Until the test closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    rig.close()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
