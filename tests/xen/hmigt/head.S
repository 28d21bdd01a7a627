/* hmigt's PVH entry.
 *
 * Xen enters here in 32-bit protected mode with paging off, flat segments of
 * unspecified selectors, IF=0, and %ebx = the physical address of struct
 * hvm_start_info (docs/misc/pvh.pandoc).  The guest brings its own GDT and
 * stack; it never loads an IDT, so any exception triple-faults and the domain
 * crashes (on_crash="preserve" keeps it for xenctx).
 *
 * The ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18) is the only note a PVH
 * kernel needs: its descriptor is the entry address.
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4f - 3f		/* name size */
	.long 6f - 5f		/* descriptor size */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
3:	.asciz "Xen"
4:	.balign 4
5:	.long hmigt_entry
6:	.balign 4

	.text
	.code32
	.globl hmigt_entry
hmigt_entry:
	lgdt	gdt_ptr
	ljmp	$0x08, $1f		/* reload %cs from our GDT */
1:	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %fs
	movl	%eax, %gs
	movl	%eax, %ss
	movl	$stack_end, %esp
	pushl	%ebx			/* hmigt_main(start_info) */
	call	hmigt_main
2:	hlt				/* hmigt_main does not return */
	jmp	2b

	.section .rodata
	.balign 8
gdt:
	.quad 0				/* null */
	.quad 0x00cf9a000000ffff	/* 0x08: code, base 0, limit 4 GiB, 32-bit */
	.quad 0x00cf92000000ffff	/* 0x10: data, base 0, limit 4 GiB */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

	.bss
	.balign 16
stack:
	.skip 16384
stack_end:

	.section .note.GNU-stack, "", @progbits
