package secureboot

import (
	"fmt"
	"time"
)

// EnrollOptions configure Enrollment.
type EnrollOptions struct {
	// DropMicrosoft leaves Microsoft's KEK and db certificates out.
	//
	// WARNING: a machine whose db lacks Microsoft's UEFI CA refuses every
	// Microsoft-signed option ROM (RAID/HBA, NIC PXE, GPU). On most servers
	// that means no video, no storage controller and no network boot before
	// the OS: the machine can be bricked until its firmware is reset.
	// Only for machines known to have no option ROMs (or virtual ones).
	DropMicrosoft bool
	// Time is the timestamp of the updates (default now). Firmware refuses
	// a later update with an older timestamp, so never backdate.
	Time time.Time
}

// DropMicrosoftWarning is shown to whoever asks to drop Microsoft's keys.
const DropMicrosoftWarning = "Without Microsoft's UEFI CA in db, the firmware refuses Microsoft-signed option ROMs " +
	"(RAID/HBA, network PXE, GPU): many servers then have no video, storage or network boot before the OS " +
	"and need a firmware reset to recover. Drop them only for machines without option ROMs."

// Enrollment is the three authenticated updates a firmware in setup mode
// takes, in the order to apply them: db and KEK first (accepted unchecked
// in setup mode, signed anyway so they also apply in user mode with this
// PK/KEK), PK last (self-signed; writing it leaves setup mode).
type Enrollment struct {
	DB, KEK, PK   []byte // .auth file contents
	ESLDB, ESLKEK []byte // the signature lists inside, for inspection
	ESLPK         []byte
	MicrosoftKept bool
	Time          time.Time
	Fingerprints  Fingerprints
}

// Enrollment builds the site's PK (PK only, self-signed), KEK (site KEK
// [+ Microsoft's], signed by PK) and db (site db [+ Microsoft's], signed by
// KEK) updates.
func (ks *KeySet) Enrollment(o EnrollOptions) (*Enrollment, error) {
	if o.Time.IsZero() {
		o.Time = time.Now()
	}
	o.Time = o.Time.UTC().Truncate(time.Second)
	kekLists := []SignatureList{X509List(ks.Owner, ks.KEK.CertDER)}
	dbLists := []SignatureList{X509List(ks.Owner, ks.DB.CertDER)}
	if !o.DropMicrosoft {
		mk, err := MicrosoftKEK()
		if err != nil {
			return nil, fmt.Errorf("build enrollment: %w", err)
		}
		md, err := MicrosoftDB()
		if err != nil {
			return nil, fmt.Errorf("build enrollment: %w", err)
		}
		kekLists = append(kekLists, mk...)
		dbLists = append(dbLists, md...)
	}
	e := &Enrollment{MicrosoftKept: !o.DropMicrosoft, Time: o.Time, Fingerprints: ks.Fingerprints()}
	var err error
	if e.ESLPK, err = MarshalSignatureLists(X509List(ks.Owner, ks.PK.CertDER)); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	if e.ESLKEK, err = MarshalSignatureLists(kekLists...); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	if e.ESLDB, err = MarshalSignatureLists(dbLists...); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	if e.PK, err = SignVariable("PK", GlobalVariable, AttrsSecureBoot, o.Time, e.ESLPK, ks.PK); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	if e.KEK, err = SignVariable("KEK", GlobalVariable, AttrsSecureBoot, o.Time, e.ESLKEK, ks.PK); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	if e.DB, err = SignVariable("db", ImageSecurityDatabase, AttrsSecureBoot, o.Time, e.ESLDB, ks.KEK); err != nil {
		return nil, fmt.Errorf("build enrollment: %w", err)
	}
	return e, nil
}
