package ec2test

import (
	"encoding/xml"
	"time"
)

// Response documents, with the element names of the EC2 API reference.
// Successful responses use lowerCamelCase elements and wrap lists in
// <...Set><item/></...Set>.

type xmlRunInstancesResponse struct {
	XMLName       xml.Name      `xml:"RunInstancesResponse"`
	Xmlns         string        `xml:"xmlns,attr"`
	RequestID     string        `xml:"requestId"`
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	GroupSet      xmlGroupSet   `xml:"groupSet"`
	InstancesSet  []xmlInstance `xml:"instancesSet>item"`
}

type xmlDescribeInstancesResponse struct {
	XMLName        xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns          string           `xml:"xmlns,attr"`
	RequestID      string           `xml:"requestId"`
	ReservationSet []xmlReservation `xml:"reservationSet>item"`
	NextToken      string           `xml:"nextToken,omitempty"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	GroupSet      xmlGroupSet   `xml:"groupSet"`
	InstancesSet  []xmlInstance `xml:"instancesSet>item"`
}

type xmlTerminateInstancesResponse struct {
	XMLName      xml.Name         `xml:"TerminateInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	InstancesSet []xmlStateChange `xml:"instancesSet>item"`
}

type xmlStateChange struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  xmlState `xml:"currentState"`
	PreviousState xmlState `xml:"previousState"`
}

type xmlDescribeImagesResponse struct {
	XMLName   xml.Name   `xml:"DescribeImagesResponse"`
	Xmlns     string     `xml:"xmlns,attr"`
	RequestID string     `xml:"requestId"`
	ImagesSet []xmlImage `xml:"imagesSet>item"`
}

type xmlImage struct {
	ImageID            string   `xml:"imageId"`
	ImageLocation      string   `xml:"imageLocation"`
	ImageState         string   `xml:"imageState"`
	ImageOwnerID       string   `xml:"imageOwnerId"`
	IsPublic           bool     `xml:"isPublic"`
	Architecture       string   `xml:"architecture"`
	ImageType          string   `xml:"imageType"`
	Name               string   `xml:"name"`
	RootDeviceType     string   `xml:"rootDeviceType"`
	RootDeviceName     string   `xml:"rootDeviceName"`
	BlockDeviceMapping []xmlBDM `xml:"blockDeviceMapping>item"`
	VirtualizationType string   `xml:"virtualizationType"`
	Hypervisor         string   `xml:"hypervisor"`
}

// xmlGroupSet is a possibly empty <groupSet/>, which EC2 always includes.
type xmlGroupSet struct {
	Items []xmlGroup `xml:"item"`
}

type xmlGroup struct {
	GroupID string `xml:"groupId"`
}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type xmlBDM struct {
	DeviceName string `xml:"deviceName"`
	Ebs        xmlEbs `xml:"ebs"`
}

type xmlEbs struct {
	VolumeID            string `xml:"volumeId,omitempty"`
	SnapshotID          string `xml:"snapshotId,omitempty"`
	VolumeSize          int    `xml:"volumeSize,omitempty"`
	VolumeType          string `xml:"volumeType,omitempty"`
	Status              string `xml:"status,omitempty"`
	AttachTime          string `xml:"attachTime,omitempty"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlProfile struct {
	Arn string `xml:"arn"`
	ID  string `xml:"id"`
}

type xmlMetadataOptions struct {
	State                   string `xml:"state"`
	HTTPTokens              string `xml:"httpTokens"`
	HTTPPutResponseHopLimit int    `xml:"httpPutResponseHopLimit"`
	HTTPEndpoint            string `xml:"httpEndpoint"`
}

type xmlInstance struct {
	InstanceID         string             `xml:"instanceId"`
	ImageID            string             `xml:"imageId"`
	InstanceState      xmlState           `xml:"instanceState"`
	PrivateDNSName     string             `xml:"privateDnsName"`
	AMILaunchIndex     int                `xml:"amiLaunchIndex"`
	InstanceType       string             `xml:"instanceType"`
	LaunchTime         string             `xml:"launchTime"`
	Placement          xmlPlacement       `xml:"placement"`
	SubnetID           string             `xml:"subnetId,omitempty"`
	PrivateIPAddress   string             `xml:"privateIpAddress,omitempty"`
	GroupSet           xmlGroupSet        `xml:"groupSet"`
	RootDeviceType     string             `xml:"rootDeviceType"`
	RootDeviceName     string             `xml:"rootDeviceName,omitempty"`
	BlockDeviceMapping []xmlBDM           `xml:"blockDeviceMapping>item"`
	IAMInstanceProfile *xmlProfile        `xml:"iamInstanceProfile,omitempty"`
	ClientToken        string             `xml:"clientToken,omitempty"`
	TagSet             []xmlTag           `xml:"tagSet>item"`
	MetadataOptions    xmlMetadataOptions `xml:"metadataOptions"`
}

// timeFormat is EC2's timestamp format (ISO 8601, milliseconds, UTC).
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }
