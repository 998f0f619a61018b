"""Drive a rig through a whole experiment with iblutil's own EchoProtocol client.

Usage: python_client.py URL
Prints one JSON object with every answer; exits 0 only if every step went as
a Python rig would have answered it.
"""
import asyncio
import json
import sys

from iblutil.io.net.app import EchoProtocol
from iblutil.io.net.base import ExpMessage

REF = '2022-01-01_1_subject'


async def main(url):
    loop = asyncio.get_running_loop()
    client = await EchoProtocol.client(url, name='python-script')
    raw = []
    receive = client._receive

    def record(data, addr):
        raw.append(bytes(data).decode())
        receive(data, addr)

    client._receive = record  # see every datagram, error reports included

    async def step(event, send):
        answer = loop.create_future()
        client.assign_callback(event, answer)
        await send()  # raises unless the rig echoed the message
        data, _ = await asyncio.wait_for(answer, 5)
        return data

    report = {}
    # Out of order: the rig refuses with an error report, which is not echoed.
    before = len(raw)
    await client.start(REF)
    for _ in range(50):
        if any(m.startswith('[0, ') for m in raw[before:]):
            break
        await asyncio.sleep(0.02)
    report['refused'] = [m for m in raw[before:] if m.startswith('[0, ')]
    report['init'] = await step(ExpMessage.EXPINIT, lambda: client.init({'subject': 'test'}))
    report['start'] = await step(ExpMessage.EXPSTART, lambda: client.start(REF, {'foo': 'bar'}))
    report['status'] = await step(ExpMessage.EXPSTATUS, lambda: client.status(20))
    report['info'] = await step(ExpMessage.EXPINFO, lambda: client.info(20))
    report['stop'] = await step(ExpMessage.EXPEND, lambda: client.stop())
    report['cleanup'] = await step(ExpMessage.EXPCLEANUP, lambda: client.cleanup())
    client.close()
    print(json.dumps(report), flush=True)


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
