/*
 * bcryptprimitives.dll for Wine 8.0, test tooling only (packaging/wine; never shipped).
 *
 * Go 1.22+ programs get their random bytes from bcryptprimitives.dll!ProcessPrng, which Windows 10+ has and Wine 8
 * lacks: every Go program aborts with "fatal error: bcryptprimitives.dll not found". This DLL exports ProcessPrng on
 * top of advapi32's SystemFunction036 (RtlGenRandom), which Wine implements with the system's random source. The
 * stage copies it into the test prefix's system32.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG n = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
